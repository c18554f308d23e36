"""MLflow entry point `cifar10`: run one CIFAR-10 experiment (see `--name`)."""

import sys

from lfxai.cli.experiment import main

if __name__ == "__main__":
    sys.exit(main("cifar10"))
