"""MLflow entry point `dsprites`: run one dSprites experiment (see `--name`)."""

import sys

from lfxai.experiments import runner

if __name__ == "__main__":
    sys.exit(runner.main("dsprites"))
