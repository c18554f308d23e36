"""MLflow entry point `explain`: label-free explanations of a registered encoder."""

import sys

from lfxai.cli.explain import main

if __name__ == "__main__":
    sys.exit(main())
