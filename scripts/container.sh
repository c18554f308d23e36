#!/usr/bin/env bash
# Build and run the lfxai image without a Docker daemon or a registry (podman + runc),
# e.g. on a CI runner or a GPU server. With a working Docker you do not need this script:
#   docker build -t lfxai . && docker run --rm -v "$PWD/mlflow-store:/mlflow" lfxai
#
# usage: scripts/container.sh SUBCOMMAND [args]
#   setup                    install podman & co. with apt-get if missing (needs root)
#   build-base               create a local stand-in for docker.io/library/python:3.11-slim
#                            (Debian bookworm + python3 via mmdebstrap) if no such image exists
#   build [podman build args]  build the project's Dockerfile as $LFXAI_IMAGE
#   run STORE [cmd args...]  run the image (default: its CMD) with the MLflow store in the
#                            host folder STORE, mounted at the same absolute path inside, so
#                            that the artifact paths recorded in STORE/mlflow.db are valid on
#                            both sides; the working directory is STORE
#   podman [args...]         podman with this script's private configuration
#   all STORE [cmd args...]  setup + build-base + build + run
#
# environment:
#   LFXAI_IMAGE           image tag (default localhost/lfxai:latest)
#   LFXAI_CONTAINER_DIR   podman configuration and image storage (default ~/.cache/lfxai-container)
#   LFXAI_BUILD_PIP_LOCAL auto (default) | 0: during `build` only, offer pip the host's local
#                         wheel folders / file:// indexes (from `pip config list`), read-only, as
#                         a speed-up; the Dockerfile never needs them
#   LFXAI_TRY_PULL        1 (default) | 0: build-base first tries to pull the real base image
#   LFXAI_RUN_ARGS        extra `podman run` arguments, e.g. "--device nvidia.com/gpu=all"
#   LFXAI_RUN_NETWORK     network of `run` (default host; "none" proves the image runs offline)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project=$(cd "$here/.." && pwd)
IMAGE=${LFXAI_IMAGE:-localhost/lfxai:latest}
BASE=docker.io/library/python:3.11-slim   # what the Dockerfile's FROM names
W=${LFXAI_CONTAINER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lfxai-container}
IMAGE_UID=1000                               # the Dockerfile's non-root user

t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*" >&2; }
die() { echo "container.sh: $*" >&2; exit 2; }

# Private podman configuration: nothing under /etc changes.
#  - runc: crun refuses hosts with cgroups in hybrid mode;
#  - explicit ulimits: root may lack CAP_SYS_RESOURCE, so podman's defaults can fail;
#  - overlay storage under $W (images, layers and the build cache survive between runs).
podman_env() {
    mkdir -p "$W"
    if [ ! -f "$W/containers.conf" ]; then
        printf '%s\n' '[containers]' \
            'default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]' \
            '[engine]' 'runtime = "runc"' 'cgroup_manager = "cgroupfs"' \
            >"$W/containers.conf"
    fi
    if [ ! -f "$W/storage.conf" ]; then
        printf '%s\n' '[storage]' 'driver = "overlay"' \
            "graphroot = \"$W/storage\"" "runroot = \"$W/run\"" >"$W/storage.conf"
    fi
    export CONTAINERS_CONF="$W/containers.conf" CONTAINERS_STORAGE_CONF="$W/storage.conf"
}

cmd_setup() {
    if command -v podman >/dev/null && command -v runc >/dev/null \
        && command -v mmdebstrap >/dev/null; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "podman/runc/mmdebstrap missing and not root: install them with apt-get"
    command -v apt-get >/dev/null || die "podman/runc/mmdebstrap missing and no apt-get"
    step "apt-get install podman buildah runc mmdebstrap ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman buildah runc mmdebstrap uidmap containernetworking-plugins \
        golang-github-containers-common ca-certificates >/dev/null
}

cmd_build_base() {
    podman_env
    if podman image exists "$BASE"; then
        step "base image $BASE exists"
        return 0
    fi
    # Try the real image first (works where a registry is reachable).
    if [ "${LFXAI_TRY_PULL:-1}" != 0 ] && timeout 120 podman pull -q "$BASE" >/dev/null 2>&1; then
        step "pulled $BASE"
        return 0
    fi
    step "no registry: building a stand-in $BASE (Debian bookworm, python3.11) with mmdebstrap"
    local src=/etc/apt/sources.list.d/debian.sources
    [ -f "$src" ] || src=/etc/apt/sources.list
    [ -f "$src" ] || die "no apt sources file for mmdebstrap"
    local tmp=/dev/shm
    [ -w /dev/shm ] || tmp=${TMPDIR:-/tmp}
    # The host's extra CA certificates (an intercepting proxy's, if any) go into this STAND-IN
    # only, so that pip inside `podman build` can reach PyPI; the project's Dockerfile has none.
    # PIP_CERT makes pip (which bundles its own CA list) use the system store.
    TMPDIR=$tmp mmdebstrap --quiet --variant=minbase \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --aptopt='APT::Install-Recommends "false"' \
        --include=ca-certificates,python3,python3-venv,python-is-python3,passwd \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"; cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true; chroot "$1" update-ca-certificates >/dev/null' \
        --customize-hook='chroot "$1" apt-get clean; rm -rf "$1"/var/lib/apt/lists/*' \
        bookworm - "$src" |
        podman import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
            --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
            --change 'CMD ["python3"]' - "$BASE" >/dev/null
    step "stand-in $BASE ready"
}

# Read-only mounts that let pip inside the build use what this host already has: the local
# wheel folders and file:// indexes named in its pip configuration (`pip config list`), offered
# through a pip.conf mounted at /etc/pip.conf for the build only. Optional: the image is the same
# without them (pip then downloads everything from PyPI), only slower to build.
PIP_MOUNTS=()
pip_local_mounts() {
    PIP_MOUNTS=()
    [ "${LFXAI_BUILD_PIP_LOCAL:-auto}" != 0 ] || return 0
    local pip_bin line key val d
    pip_bin=$(command -v pip3 || command -v pip || true)
    [ -n "$pip_bin" ] || return 0
    local find_links=() indexes=() dirs=()
    while IFS= read -r line; do
        key=${line%%=*}; val=${line#*=}; val=${val#\'}; val=${val%\'}
        case "$key" in
            *find-links|*find_links)
                for d in $val; do d=${d#file://}; [ -d "$d" ] && find_links+=("$d") && dirs+=("$d"); done ;;
            *index-url|*index_url)
                for d in $val; do
                    case "$d" in
                        file://*/simple|file://*/simple/)
                            d=${d#file://}; d=${d%/}
                            [ -d "$d" ] && indexes+=("file://$d") && dirs+=("${d%/simple}") ;;
                    esac
                done ;;
        esac
    done < <("$pip_bin" config list 2>/dev/null || true)
    [ ${#dirs[@]} -gt 0 ] || return 0
    local conf="$W/build-pip.conf"
    { echo '[global]'
      [ ${#find_links[@]} -eq 0 ] || echo "find-links = $(printf '%s\n' "${find_links[@]}" | sort -u | tr '\n' ' ')"
      [ ${#indexes[@]} -eq 0 ] || echo "extra-index-url = $(printf '%s\n' "${indexes[@]}" | sort -u | tr '\n' ' ')"
    } >"$conf"
    PIP_MOUNTS=(-v "$conf:/etc/pip.conf:ro")
    while IFS= read -r d; do PIP_MOUNTS+=(-v "$d:$d:ro"); done < <(printf '%s\n' "${dirs[@]}" | sort -u)
}

cmd_build() {
    podman_env
    podman image exists "$BASE" || cmd_build_base
    pip_local_mounts
    [ ${#PIP_MOUNTS[@]} -eq 0 ] || step "optional pip speed-up (host's local wheels): ${PIP_MOUNTS[*]}"
    step "podman build -t $IMAGE $project"
    podman build --pull=never --network host --layers \
        "${PIP_MOUNTS[@]}" -t "$IMAGE" "$@" "$project"
    step "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1/1e9}'))"
}

cmd_run() {
    podman_env
    [ $# -ge 1 ] || die "usage: container.sh run STORE [cmd args...]"
    local store=$1; shift
    mkdir -p "$store"
    store=$(cd "$store" && pwd)
    local user_args=()
    if [ "$(id -u)" = 0 ]; then
        # keep the image's non-root user; let it write to the (root-owned) store folder
        chown "$IMAGE_UID:$IMAGE_UID" "$store"
    else
        # rootless podman: run as the calling user, so the store's files are theirs on the host
        user_args=(--userns=keep-id --user "$(id -u):$(id -g)")
    fi
    step "podman run $IMAGE (store $store) ${*:-<default command>}"
    # shellcheck disable=SC2086  # LFXAI_RUN_ARGS is split on purpose
    podman run --rm --network "${LFXAI_RUN_NETWORK:-host}" "${user_args[@]}" \
        -v "$store:$store" -w "$store" \
        -e "MLFLOW_TRACKING_URI=sqlite:///$store/mlflow.db" \
        ${LFXAI_RUN_ARGS:-} "$IMAGE" "$@"
}

main() {
    local sub=${1:-}
    [ $# -eq 0 ] || shift
    case "$sub" in
        setup) cmd_setup ;;
        build-base) cmd_setup; cmd_build_base ;;
        build) cmd_build "$@" ;;
        run) cmd_run "$@" ;;
        podman) podman_env; exec podman "$@" ;;
        all) cmd_setup; cmd_build_base; cmd_build; cmd_run "$@" ;;
        *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; [ -z "$sub" ] || exit 2 ;;
    esac
}

main "$@"
