"""Servers the end-to-end tests start on loopback: PostgreSQL and an MLflow tracking server.

Shared by the tests of scaling out (``test_tracking_server.py``: two entry points log to one
server) and of sweeps (``test_sweep.py``: two sweep workers share one study and one server).
Module-scoped: each test module gets its own cluster and server. The server is set up as the
README's shared one: MLflow's basic-auth app (users in their own PostgreSQL database), a
random admin password, and a non-admin ``worker`` user whose credentials clients pass in
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (``TrackingServer.credentials``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers import in_ci, kill_group

# A port found free may be taken by another process before our server binds it: a server
# that cannot start is retried on a fresh port, this many times in all.
PORT_ATTEMPTS = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exited(process: subprocess.Popen) -> bool:
    """Whether ``process`` has exited, asked without reaping it (unlike ``poll``): until
    :func:`_stop` reaps it, its id still names its process group, safe to signal."""
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    return os.waitid(os.P_PID, process.pid, flags) is not None


def _stop(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM to the server's whole group (its workers too), SIGKILL after ``grace``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not _exited(process) and time.monotonic() < deadline:
        time.sleep(0.5)
    kill_group(process)  # whatever of the group outlived the grace period
    process.wait()


def _pg_bin() -> Path:
    """PostgreSQL's server binaries; installs Debian's postgresql when they are missing."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries not found and could not be installed")
    return found[-1].parent


def _as_postgres(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: run its tools as the `postgres` system user then.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL cluster on a loopback port; yields its SQLAlchemy URI."""
    bin_dir = _pg_bin()
    # Not under pytest's tmp dir: that is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="lfxai-pg-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, data):
            os.chown(path, user.pw_uid, user.pw_gid)
    subprocess.run(
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
        check=True,
        capture_output=True,
    )
    log = root / "server.log"
    for _attempt in range(PORT_ATTEMPTS):
        port = _free_port()
        started = subprocess.run(
            _as_postgres(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-w",
                    "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
        )
        if started.returncode == 0:
            break
    else:
        server_log = log.read_text() if log.exists() else ""
        tried = f"PostgreSQL did not start on {PORT_ATTEMPTS} ports"
        pytest.fail(f"{tried}: {started.stderr}\n{server_log}")
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(bin_dir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "mlflow",
                ]
            ),
            check=True,
            capture_output=True,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


class TrackingServer(NamedTuple):
    """A running ``mlflow server``: its URI, artifact folder and a worker's credentials
    (environment variables for a client: ``{**venv_env(uri), **credentials}``)."""

    uri: str
    artifacts: Path
    credentials: dict[str, str]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _auth_config(folder: Path, database: str) -> Path:
    """The basic-auth app's configuration: signed-in users may edit every experiment and
    model (workers share ``<dataset>-<experiment>`` experiments and registered models);
    anonymous requests are refused. Credential checks are cached for a minute, so that
    PBKDF2 runs once per worker and minute, not per request."""
    config = folder / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = EDIT\n"
        f"database_uri = {database}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    return config


@pytest.fixture(scope="module")
def tracking_server(postgres, new_database, tmp_path_factory):
    """``mlflow server --app-name basic-auth`` on PostgreSQL with proxied artifacts; yields
    a :class:`TrackingServer` whose ``worker`` user was created by the admin."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    logs = tmp_path_factory.mktemp("server-logs")
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": secrets.token_hex(16)}
    worker = {
        "MLFLOW_TRACKING_USERNAME": "worker",
        "MLFLOW_TRACKING_PASSWORD": secrets.token_hex(16),
    }
    server_env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(_auth_config(logs, new_database("mlflow_auth"))),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin["MLFLOW_TRACKING_PASSWORD"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),  # CSRF, the same in workers
    }
    server = None
    try:
        for attempt in range(PORT_ATTEMPTS):
            port = _free_port()
            log = logs / f"attempt-{attempt}.log"  # a file, not a pipe: it never fills up
            with open(log, "w") as output:
                server = subprocess.Popen(
                    [
                        str(mlflow_bin),
                        "server",
                        "--backend-store-uri",
                        postgres,
                        "--artifacts-destination",
                        str(artifacts),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--workers",
                        "2",
                        "--app-name",
                        "basic-auth",
                    ],
                    env=server_env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its workers are in its group: stopped together
                )
            uri = f"http://127.0.0.1:{port}"
            if _healthy(server, uri):
                break
            _stop(server)
            server = None
        else:
            pytest.fail(f"mlflow server did not start: {log.read_text()[-3000:]}")
        with warnings.catch_warnings():  # mlflow.server imports Starlette's deprecated WSGI
            warnings.simplefilter("ignore")
            from mlflow.server import get_app_client  # MLflow's client of the basic-auth app

        with _environment(admin):
            users = get_app_client("basic-auth", tracking_uri=uri)
            users.create_user(
                worker["MLFLOW_TRACKING_USERNAME"], worker["MLFLOW_TRACKING_PASSWORD"]
            )
        yield TrackingServer(uri, artifacts, worker)
    finally:
        if server is not None:
            _stop(server)


def _healthy(server: subprocess.Popen, uri: str, deadline_s: float = 120) -> bool:
    """Whether the server answers ``/health`` before it exits or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while not _exited(server) and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                # Our server still running after the answer: not another one on that port.
                if response.status == 200 and not _exited(server):
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


@pytest.fixture(scope="session")
def chromium():
    """``chromium(page, png, width, height)`` screenshots a local HTML file with headless
    Chromium (a fresh profile each time); installs Debian's ``chromium`` when it is missing.
    Without it the test fails under CI (``CI=true``) and is skipped elsewhere."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
        subprocess.run(install, check=False, env=env)
        binary = shutil.which("chromium")
    if binary is None:
        message = "headless Chromium not found and could not be installed (Debian: chromium)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)

    def screenshot(page: Path, png: Path, width: int = 1280, height: int = 4000) -> Path:
        profile = Path(tempfile.mkdtemp(prefix="lfxai-chromium-"))
        try:
            command = [
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                page.resolve().as_uri(),
            ]
            done = subprocess.run(command, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
            return png
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    return screenshot


@pytest.fixture(scope="module")
def new_database(postgres):
    """``new_database(name)`` creates a database in the cluster; returns its SQLAlchemy URI
    (``postgresql+psycopg://``), e.g. for an Optuna storage beside MLflow's database."""
    import psycopg

    server = postgres.rsplit("/", 1)[0]

    def create(name: str) -> str:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"{server.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"

    return create
