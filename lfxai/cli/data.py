"""Command line: provision data sets ahead of the experiments.

Usage::

    python -m lfxai provision [mnist] [ecg5000] [cifar10] [dsprites] [--data_dir data]

``--data_dir`` is the project data directory; each data set goes to its own root below it,
laid out as torchvision would:

- mnist: ``<data_dir>/mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
  (so ``torchvision.datasets.MNIST("<data_dir>/mnist")`` finds it, as the README's toy
  example expects with ``data/mnist``);
- ecg5000: ``<data_dir>/ecg5000/ECG5000/ECG5000_{TRAIN,TEST}.tsv``;
- cifar10: ``<data_dir>/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
  (downloaded by torchvision; there is no offline source).
- dsprites: ``<data_dir>/dsprites/dsprites_64x64.{packed,json}`` (bit-packed images and
  their metadata), from the official npz when present or downloadable, else rendered.

With no data set named, all of them are provisioned. Exit status 1 if any failed. The data sets
are the registered ones (:data:`lfxai.plugins.DATASETS`), each provisioned by its plugin.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lfxai.data import DEFAULT_DATA_DIR
from lfxai.plugins import DATASETS


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, provision the requested data sets, print one line each."""
    parser = argparse.ArgumentParser(prog="python -m lfxai", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    provision = commands.add_parser("provision", help="fetch or convert data sets into place")
    # No argparse `choices` here: with nargs="*" it rejects the empty default on Python 3.11.
    provision.add_argument("datasets", nargs="*", help=f"any of {', '.join(DATASETS)}")
    provision.add_argument("--data_dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; known: {list(DATASETS)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    failed = False
    for name in args.datasets or list(DATASETS):
        start = time.perf_counter()
        plugin = DATASETS[name]
        try:
            result = plugin.provision_root(plugin.root(args.data_dir))
        except RuntimeError as error:
            print(f"{name}: FAILED\n{error}", file=sys.stderr)
            failed = True
            continue
        seconds = time.perf_counter() - start
        print(f"{name}: {result.path} (source: {result.source}, {seconds:.1f} s)")
    return 1 if failed else 0
