# lfxai: one image for every MLflow entry point, on a laptop (CPU) or a GPU server (CUDA).
#
#   docker build -t lfxai .
#   docker run --rm -v "$PWD/mlflow-store:/mlflow" lfxai                  # quick MNIST run
#   docker run --rm --gpus all -v "$PWD/mlflow-store:/mlflow" lfxai \
#       mlflow run /opt/lfxai -e mnist -P name=consistency_features -P profile=paper --env-manager local
#
# The project lives in /opt/lfxai, its environment in /opt/venv (first on PATH, so that
# `mlflow run --env-manager local` uses it and never tries to build conda.yaml), the data sets are
# provisioned at build time (the image runs offline) and runs are recorded in the MLflow store in
# the volume /mlflow: the db at /mlflow/mlflow.db and, because /mlflow is also the working
# directory, the artifacts under /mlflow/mlruns. On x86_64, torch from PyPI is the CUDA build:
# the same image uses GPUs when started with them (`--gpus all`) and the CPU otherwise.
# `RUN --mount=type=cache` needs BuildKit (Docker's default builder since 23.0) or podman/buildah.

# The dependency list, read from pyproject.toml (the single source of truth: nothing is kept by
# hand here): the build requirements and [project].dependencies. Only this short file feeds the
# slow layer below, so edits elsewhere in pyproject.toml (tool settings, extras) keep its cache.
FROM python:3.11-slim AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(p['build-system']['requires'] + p['project']['dependencies']))" >/requirements.txt

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib

# The non-root user the runs execute as, and the folder the MLflow store volume is mounted on.
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash lfxai \
    && mkdir -p /mlflow \
    && chown lfxai:lfxai /mlflow \
    && python -m venv "$VIRTUAL_ENV"

WORKDIR /opt/lfxai

# Dependencies first, in their own layer (slow: torch with its CUDA wheels is several GB; cached
# until the dependency list changes).
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -r /tmp/requirements.txt

# An init for PID 1 (a bare `mlflow run` as PID 1 ignores SIGTERM and is SIGKILLed by
# `docker stop`): dumb-init turns SIGTERM into SIGINT (Ctrl-C) for the whole process group, so
# `mlflow run` cancels and waits for its child, which ends its runs KILLED.
RUN pip install --no-cache-dir dumb-init==1.2.5.post1

# The package itself (its dependencies are all there already: --no-deps, then `pip check`).
COPY . .
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip check \
    && rm -rf build ./*.egg-info

# The data sets, so that the image runs offline: data/mnist and data/ecg5000 under /opt/lfxai,
# the working directory of the entry points (`mlflow run` starts them in the project folder).
# The data-carrying wheels stay in a build cache, out of the image.
RUN --mount=type=cache,target=/root/.cache/lfxai \
    python -m lfxai provision mnist ecg5000

# Runs go to the store in the volume (see above); no telemetry and no git in an offline image.
ENV MLFLOW_TRACKING_URI=sqlite:////mlflow/mlflow.db \
    MLFLOW_DISABLE_TELEMETRY=true \
    GIT_PYTHON_REFRESH=quiet
VOLUME ["/mlflow"]
WORKDIR /mlflow
USER 1000:1000

# Before the command: create / migrate a new SQLite store once, under a lock (concurrent
# containers on one new store would break it; a shared store is a tracking server, see README).
ENTRYPOINT ["dumb-init", "--rewrite", "15:2", "--", "sh", "-c", "python -m lfxai.tracking >/dev/null && exec \"$@\"", "lfxai"]
CMD ["mlflow", "run", "/opt/lfxai", "-e", "mnist", "-P", "name=consistency_features", "-P", "profile=quick", "--env-manager", "local"]
