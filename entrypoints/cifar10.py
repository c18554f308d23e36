"""MLflow entry point `cifar10`: run one CIFAR-10 experiment (see `--name`)."""

import sys

from lfxai.experiments import runner

if __name__ == "__main__":
    sys.exit(runner.main("cifar10"))
