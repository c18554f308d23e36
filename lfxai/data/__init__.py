"""Data sets, one module per data set, and their offline provisioning.

On-disk convention: a project-wide data directory (``data/`` by default) holds one root per
data set, ``<data>/<name>`` (``data/mnist``, ``data/ecg5000``). Each root is laid out the way
torchvision lays out its own roots: ``<root>/MNIST/raw/...``, ``<root>/ECG5000/...``, so
``torchvision.datasets.MNIST("data/mnist")`` reads the same files as ``lfxai.data.mnist``.
"""

from pathlib import Path

DEFAULT_DATA_DIR = Path("data")


def dataset_root(data_dir: str | Path, name: str) -> Path:
    """Root of one data set under the project data directory: ``<data_dir>/<name>``."""
    return Path(data_dir) / name
