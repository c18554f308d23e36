"""The MLflow entry points (``python -m entrypoints.<dataset>``).

Importing this package, which Python does before any entry point module, makes torch's
OpenMP threads sleep while they wait for work (``OMP_WAIT_POLICY=PASSIVE``) unless the user
chose a policy. libgomp's default is to spin for a while first; on a machine whose cores are
shared with other jobs a spinning thread takes the core from the thread it waits for, and
one MNIST autoencoder epoch took 340-410 s instead of 31-54 s with two threads at load 9-11
on the 2-core development machine (same thread count, same results: only the waiting
changes). libgomp reads the variable once, when torch loads it, so this must run before
anything imports torch: keep this module free of imports that pull torch in.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Our processes never unpickle what a store holds, whatever the environment says: MLflow then
# refuses pickled models, and lfxai loads encoders from their tensor-only state.
os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
