"""Data set plugins: one module per data set, each registering itself in ``DATASETS``."""

from lfxai.plugins import cifar10, dsprites, ecg5000, mnist  # noqa: F401  (each registers itself)
from lfxai.plugins.base import DATASETS, DatasetPlugin, Splits, get_dataset, register_dataset

__all__ = ["DATASETS", "DatasetPlugin", "Splits", "get_dataset", "register_dataset"]
