"""MLflow entry point `ecg5000`: run one ECG5000 experiment (see `--name`)."""

import sys

from lfxai.experiments import runner

if __name__ == "__main__":
    sys.exit(runner.main("ecg5000"))
