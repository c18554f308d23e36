"""MLflow entry point `report`: the paper regenerated from the store (see `lfxai.report`)."""

import sys

from lfxai.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
