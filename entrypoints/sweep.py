"""MLflow entry point `sweep`: an Optuna sweep over a VAE's beta, latent size and loss."""

import sys

from lfxai.sweep import runner

if __name__ == "__main__":
    sys.exit(runner.main())
