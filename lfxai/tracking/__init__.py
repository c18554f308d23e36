"""The only part of lfxai that talks to MLflow: one module per idea.

- :mod:`~lfxai.tracking.tracker`: a :class:`Tracker` logs to one run (params, curves,
  artifacts, nested runs, descriptions); experiments receive one and never import mlflow.
- :mod:`~lfxai.tracking.registry`: the Model Registry: encoders logged without pickle, one
  :meth:`~Tracker.register_encoder`, :func:`load_encoder`, :func:`registered_name`.
- :mod:`~lfxai.tracking.explained`: any registered encoder loaded for ``explain`` without
  running code from the store, and the version a run consumed recorded on it.
- :mod:`~lfxai.tracking.inputs`: the data sets a run used, as run inputs.
- :mod:`~lfxai.tracking.lifecycle`, :mod:`~lfxai.tracking.stops`,
  :mod:`~lfxai.tracking.heartbeat`, :mod:`~lfxai.tracking.resume`: a run's life: opened,
  ended FINISHED / FAILED / KILLED, beating while it works; runs a dead process left behind
  ended or resumed.
- :mod:`~lfxai.tracking.store`: the store (created once, under a lock) and where runs go.
- :mod:`~lfxai.tracking.reader`: runs read back for the report.
- :mod:`~lfxai.tracking.tags`: the names of our tags.
- :mod:`~lfxai.tracking.compat`: every private MLflow / Optuna API we use, each with why.
"""

from lfxai.models.stored import EncoderRefused
from lfxai.tracking.explained import (
    LFXAI_MODEL,
    MODEL_TAG,
    PT2_MODEL,
    ExplainedModel,
    load_explained_model,
    record_explained_model,
)
from lfxai.tracking.heartbeat import (
    HEARTBEAT_ENV,
    HEARTBEAT_S,
    STALE_AFTER_S,
    STALE_BEATS,
    UNCLAIMED_STALE_S,
    Heartbeat,
    heartbeat_every,
    seconds_since_alive,
    stale_after,
)
from lfxai.tracking.lifecycle import terminate_run, tracked_run
from lfxai.tracking.reader import RunRecord, StoreReader
from lfxai.tracking.registry import (
    encoder_description,
    experiment_alias,
    load_encoder,
    registered_name,
)
from lfxai.tracking.resume import ResumeRefused, check_resumable, end_stale_runs
from lfxai.tracking.stops import Stopped, error_text, in_store_call
from lfxai.tracking.store import (
    DEFAULT_EXPERIMENT,
    DEFAULT_TRACKING_URI,
    absolute_uri,
    ensure_experiment,
    experiment_name,
    file_lock,
    init_store,
    run_location,
    sqlite_path,
    system_metrics,
    tracking_uri,
)
from lfxai.tracking.tags import (
    DATA_DIGEST_TAG,
    ENCODER_URI_TAG,
    ERROR_TAG,
    HEARTBEAT_TAG,
    IDENTITY_TAGS,
    MOVED_TO_TAG,
    NOTE_TAG,
    RESUMED_INTO_TAG,
    RUN_NAME_TAG,
    STALE_AFTER_TAG,
    STOPPED_TAG,
)
from lfxai.tracking.tracker import ResumedTracker, Tracker

__all__ = [
    "record_explained_model",
    "load_explained_model",
    "ExplainedModel",
    "PT2_MODEL",
    "MODEL_TAG",
    "LFXAI_MODEL",
    "DATA_DIGEST_TAG",
    "DEFAULT_EXPERIMENT",
    "DEFAULT_TRACKING_URI",
    "ENCODER_URI_TAG",
    "ERROR_TAG",
    "HEARTBEAT_ENV",
    "HEARTBEAT_S",
    "HEARTBEAT_TAG",
    "IDENTITY_TAGS",
    "MOVED_TO_TAG",
    "NOTE_TAG",
    "RESUMED_INTO_TAG",
    "RUN_NAME_TAG",
    "STALE_AFTER_S",
    "STALE_AFTER_TAG",
    "STALE_BEATS",
    "STOPPED_TAG",
    "UNCLAIMED_STALE_S",
    "EncoderRefused",
    "Heartbeat",
    "ResumeRefused",
    "ResumedTracker",
    "RunRecord",
    "Stopped",
    "in_store_call",
    "StoreReader",
    "Tracker",
    "absolute_uri",
    "check_resumable",
    "end_stale_runs",
    "ensure_experiment",
    "error_text",
    "experiment_name",
    "file_lock",
    "heartbeat_every",
    "init_store",
    "load_encoder",
    "registered_name",
    "encoder_description",
    "experiment_alias",
    "run_location",
    "seconds_since_alive",
    "sqlite_path",
    "stale_after",
    "system_metrics",
    "terminate_run",
    "tracked_run",
    "tracking_uri",
]
