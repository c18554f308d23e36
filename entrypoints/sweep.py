"""MLflow entry point `sweep`: an Optuna sweep over a VAE's beta, latent size and loss."""

import sys

from lfxai.cli.sweep import main

if __name__ == "__main__":
    sys.exit(main())
