"""MLflow entry point `dsprites`: run one dSprites experiment (see `--name`)."""

import sys

from lfxai.cli.experiment import main

if __name__ == "__main__":
    sys.exit(main("dsprites"))
