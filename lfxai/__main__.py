"""``python -m lfxai provision [dataset ...] [--data_dir data]``: the data sets, ahead of time.

The command is :mod:`lfxai.cli.data`.
"""

import sys

from lfxai.cli.data import main

if __name__ == "__main__":
    sys.exit(main())
