"""``python -m lfxai provision [dataset ...] [--data_dir data]``: the data sets, ahead of the
experiments (:mod:`lfxai.cli.data`)."""

import sys

from lfxai.cli.data import main

if __name__ == "__main__":
    sys.exit(main())
