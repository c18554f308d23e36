"""The MLflow entry points (see MLproject): thin scripts around the library's runners."""

import os

# Our processes never unpickle what a store holds, whatever the environment says: MLflow then
# refuses pickled models, and lfxai loads encoders from their tensor-only state.
os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
