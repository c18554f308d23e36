"""MLflow entry point `ecg5000`: run one ECG5000 experiment (see `--name`)."""

import sys

from lfxai.cli.experiment import main

if __name__ == "__main__":
    sys.exit(main("ecg5000"))
