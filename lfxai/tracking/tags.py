"""The names of the tags lfxai sets on runs, experiments and registered models.

One vocabulary for every module of the package (and the code that reads runs back): what a
run is, why it ended, whether its process is alive, what the UI shows.
"""

from __future__ import annotations

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

# The tags that say what a run is; nested runs inherit them from their parent, so a search
# by data set, experiment or profile finds every run of a sweep or grid.
IDENTITY_TAGS = ("lfxai.dataset", "lfxai.experiment", "lfxai.profile", "lfxai.version")
# The identity a resumed run must share with the command that resumes it (not the version:
# a fix of the code may be resumed into a run of the previous one).
RESUME_IDENTITY = ("dataset", "experiment", "profile")
ERROR_TAG = "lfxai.error"  # why a run FAILED
STOPPED_TAG = "lfxai.stopped"  # why a run was KILLED (the signal that stopped it)
RESUMED_INTO_TAG = "lfxai.resumed_into"  # on the run `mlflow run` made for a resume
MOVED_TO_TAG = "lfxai.moved_to"  # on the run `mlflow run` made in Default (see take_over)
# A working top-level run refreshes HEARTBEAT_TAG (UTC, ISO 8601) every few seconds and
# declares in STALE_AFTER_TAG how long a silence means its process is dead (lifecycle).
HEARTBEAT_TAG = "lfxai.heartbeat"
STALE_AFTER_TAG = "lfxai.stale_after"
RUN_NUMBER_TAG = "lfxai.run_number"
DATA_DIGEST_TAG = "lfxai.data_digest"  # digest of the training data (the run's inputs)
ENCODER_URI_TAG = "lfxai.encoder_uri"  # the encoder a run logged or reused
# Where a run's code came from (`mlflow run`: the project, its entry point and git commit);
# nested runs inherit them too, so the UI shows the project, not the entry point script.
SOURCE_TAG_PREFIXES = ("mlflow.source.", "mlflow.project.", "mlflow.gitRepoURL")
PARENT_TAG = MLFLOW_PARENT_RUN_ID  # MLflow's own: the run a nested run belongs to
NOTE_TAG = "mlflow.note.content"  # the run's description in the UI
RUN_NAME_TAG = "mlflow.runName"
# The UI opens an experiment with this kind in its "Model training" view (runs table, charts),
# not in the GenAI view (traces) MLflow 3 shows by default.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
