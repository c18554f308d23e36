"""Explaining a registered model (the ``explain`` entry point, :mod:`lfxai.explain`).

Loading any registered encoder without running code from the store, and recording on a run
which model version it consumed.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.exceptions import MlflowException

from lfxai.models.stored import RECIPE_FILE, STATE_FILE, EncoderRefused
from lfxai.tracking.registry import first_line, load_encoder, model_location, read_mlmodel
from lfxai.tracking.tracker import Tracker

LFXAI_MODEL = "lfxai"  # logged by lfxai: rebuilt from its recipe and tensor state
PT2_MODEL = "pt2"  # anyone's nn.Module in MLflow's pickle-free pt2 format (a torch.export graph)
PT2_FILE = "model.pt2"  # MLflow's name for the archive, under the flavor's model_data folder
MODEL_TAG = "lfxai.model"  # prefix of the lineage tags (lfxai.model.name, ...)


@dataclasses.dataclass(frozen=True)
class ExplainedModel:
    """Which model a run explains, resolved once when it starts.

    Attributes:
        uri: as given (``models:/<name>@<alias>``, ``models:/<name>/<version>``,
            ``models:/<model id>``, ``runs:/<run id>/<path>`` or a local model folder).
        resolved: the URI that was loaded, an alias replaced by its version.
        kind: :data:`LFXAI_MODEL` or :data:`PT2_MODEL`.
        name, version, alias: the registered model, when the URI names one.
        model_id: MLflow's logged model id (from the model's ``MLmodel``).
        source_run: the run that logged the model.
        input_shape: one input's shape as the model's signature declares it (``-1``: any
            size), or None without a tensor signature.
    """

    uri: str
    resolved: str
    kind: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    model_id: str | None = None
    source_run: str | None = None
    input_shape: tuple[int, ...] | None = None

    def tags(self) -> dict[str, str]:
        """The run's lineage tags ``lfxai.model.<field>`` (fields that are set)."""
        fields = ("uri", "resolved", "kind", "name", "version", "alias", "model_id", "source_run")
        values = {field: getattr(self, field) for field in fields}
        return {f"{MODEL_TAG}.{k}": str(v) for k, v in values.items() if v is not None}


def load_explained_model(uri: str, device: str = "cpu") -> tuple[torch.nn.Module, ExplainedModel]:
    """Any registered encoder, loaded without running code from the store.

    An encoder lfxai logged (its model holds our recipe and tensor state) is rebuilt by
    :func:`load_encoder`. Any other model must be MLflow's pickle-free ``pt2`` format (what
    ``mlflow.pytorch.log_model(module, ..., serialization_format="pt2")`` writes): it is
    loaded by :func:`mlflow.pytorch.load_model`, which with
    ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` false first checks that every record of the
    archive is JSON, plain text or accepted by ``torch.load(weights_only=True)``, and is
    wrapped as an :class:`~lfxai.models.exported.ExportedEncoder`. A pickled model, a model
    that carries code (``code_paths``: loading would put it on ``sys.path``) or a session
    that allows unpickling is refused.

    Args:
        uri: see :attr:`ExplainedModel.uri`; a registry alias is resolved once, so the
            files all come from the version recorded.
        device: where the module goes.

    Raises:
        EncoderRefused: the URI does not resolve (no such model, alias, version or run), or
            the model is refused (the message says why, in one line).
    """
    from urllib.parse import urlparse

    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION

    from lfxai.models.exported import ExportedEncoder

    if not urlparse(uri).scheme and not Path(uri).is_dir():  # a path, not a URI
        raise EncoderRefused(
            f"{uri}: no such model folder; expected models:/<name>@<alias>, "
            "models:/<name>/<version>, runs:/<run id>/<path> or a downloaded model folder"
        )
    resolved, location = model_location(uri)
    name = version = alias = None
    if resolved.startswith("models:/") and resolved.count("/") == 2:
        name, version = resolved.removeprefix("models:/").split("/")
        # as model_location reads it: an alias ends the name of a URI without a version (a
        # registered model's name may itself hold an "@")
        given, _, rest = uri.removeprefix("models:/").rstrip("/").partition("/")
        alias = given.rsplit("@", 1)[1] if "@" in given and not rest else None
    with tempfile.TemporaryDirectory() as tmp:
        model, flavor, stored = read_mlmodel(uri, location, tmp)
        if flavor is None:
            raise EncoderRefused(
                f"{uri} is not a PyTorch model (flavors {sorted(model.flavors)}); log the "
                "encoder with mlflow.pytorch.log_model(..., serialization_format='pt2')"
            )
        found = ExplainedModel(
            uri,
            resolved,
            PT2_MODEL,
            name,
            version,
            alias,
            getattr(model, "model_id", None),
            model.run_id,
            _signature_input_shape(model),
        )
        ours = {f"extra_files/{f}" for f in (RECIPE_FILE, STATE_FILE)}
        if ours <= stored:
            found = dataclasses.replace(found, kind=LFXAI_MODEL)
            return load_encoder(resolved, device), found
        if flavor.get("code"):
            raise EncoderRefused(
                f"{uri} carries code ({flavor['code']}) that loading would put on sys.path: "
                "refused; log the encoder without code_paths"
            )
        if MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
            raise EncoderRefused(
                f"{uri}: MLFLOW_ALLOW_PICKLE_DESERIALIZATION is true, so MLflow would load the "
                "model without checking it for pickled code; unset it (or set it to false)"
            )
        try:
            local = Path(mlflow.artifacts.download_artifacts(location, dst_path=tmp))
        except (MlflowException, OSError) as error:
            reason = first_line(error) if isinstance(error, MlflowException) else error
            raise EncoderRefused(f"{uri}: the model's files do not download ({reason})") from None
        archive = local / str(flavor.get("model_data", "data")) / PT2_FILE
        if not archive.is_file():
            raise EncoderRefused(
                f"{uri} is a pickled PyTorch model, never loaded because unpickling runs code; "
                "register it with mlflow.pytorch.log_model(..., serialization_format='pt2')"
            )
        try:
            graph = mlflow.pytorch.load_model(str(local))
        except MlflowException as error:  # e.g. a record that is not pickle-free
            raise EncoderRefused(f"{uri}: {first_line(error)}") from None
        except Exception as error:  # torch.export.load: an operator this torch does not have
            raise EncoderRefused(
                f"{uri}: its pt2 graph does not load ({type(error).__name__}: {_one_line(error)})"
            ) from None
    return ExportedEncoder(graph).to(device), found


def _signature_input_shape(model: Any) -> tuple[int, ...] | None:
    """One input's shape from a model's signature: one tensor input ``(-1, ...)``, or None."""
    signature = model.signature
    if signature is None or signature.inputs is None or not signature.inputs.is_tensor_spec():
        return None
    specs = signature.inputs.inputs
    if len(specs) != 1 or not specs[0].shape or specs[0].shape[0] != -1:
        return None
    return tuple(int(n) for n in specs[0].shape[1:])


def _one_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), "")


def record_explained_model(tracker: Tracker, model: ExplainedModel) -> None:
    """Records on ``tracker``'s run which model it explains.

    The tags ``lfxai.model.<field>`` (:meth:`ExplainedModel.tags`) and, when the logged model
    is in this store, MLflow's own model input (:class:`mlflow.entities.LoggedModelInput`: the
    run page lists the model among its logged models, as an input).
    """
    from mlflow.entities import LoggedModelInput

    tracker.set_tags(model.tags())
    if model.model_id is None:
        return
    try:
        tracker.client.get_logged_model(model.model_id)
    except MlflowException:
        return  # a model folder from another store: the tags say what it was
    tracker.client.log_inputs(tracker.run_id, models=[LoggedModelInput(model.model_id)])
