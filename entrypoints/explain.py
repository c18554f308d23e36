"""MLflow entry point `explain`: label-free explanations of a registered encoder."""

import sys

from lfxai.explain import runner

if __name__ == "__main__":
    sys.exit(runner.main())
