"""The Model Registry: encoders logged without pickle, registered, described and loaded.

An encoder is logged as an MLflow PyTorch model in MLflow's pickle-free ``pt2`` format, with
our recipe and tensor-only state as its extra files (:mod:`lfxai.models.stored`); loading
(:func:`load_encoder`) reads only those two and rebuilds the module from our own code.
:meth:`RegisteredModels.register_encoder` is the one way an experiment registers one.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from torch import nn

from lfxai.models.stored import (
    RECIPE_FILE,
    STATE_FILE,
    EncoderRefused,
    load_encoder_files,
    write_encoder_files,
)
from lfxai.tracking.tags import DATA_DIGEST_TAG, RUN_NAME_TAG

REGISTERED_PREFIX = "lfxai"  # every registered model's name starts with it


def registered_name(dataset: str, model: str, dim_latent: int | None = None) -> str:
    """The one spelling of a registered model's name: ``lfxai-<dataset>-<model>[-d<d>]``.

    ``model`` is lower-cased with spaces and underscores as dashes, so a model label, a loss
    or a task name reads alike: ``registered_name("mnist", "denoising AE", 4)`` is
    ``lfxai-mnist-denoising-ae-d4``, ``registered_name("mnist", "beta_tc_vae", 3)``
    ``lfxai-mnist-beta-tc-vae-d3``; ``registered_name("mnist", "")`` is the prefix of all of
    a data set's models.
    """
    label = model.lower().replace(" ", "-").replace("_", "-")
    suffix = "" if dim_latent is None else f"-d{dim_latent}"
    return f"{REGISTERED_PREFIX}-{dataset}-{label}{suffix}"


def experiment_alias(experiment: str, profile: str) -> str:
    """The alias of the newest encoder an experiment trained at a profile.

    ``consistency_features-paper``: what ``pretrained=true`` of that experiment and profile
    reuses. Several experiments register under one name (MNIST's denoising AE serves
    ``consistency_features``, ``consistency_examples`` and ``pretext``); the profile's own
    alias (``@paper``) is the newest version of that profile, whichever experiment made it.
    """
    return f"{experiment}-{profile}"


def default_aliases(experiment: str, profile: str | None) -> tuple[str, ...]:
    """The aliases a new encoder version takes: its profile's and its experiment's."""
    if not profile:
        return ()
    if experiment in ("", "?"):  # a run no experiment made (e.g. a user's own script)
        return (profile,)
    return (profile, experiment_alias(experiment, profile))


def alias_claim_tag(alias: str) -> str:
    """The version tag by which a version claims ``alias`` (``lfxai.alias.paper``)."""
    return f"lfxai.alias.{alias}"


def encoder_description(name: str, inputs: str, dim_latent: int, what: str) -> str:
    """A registered encoder's own description: what every version of ``name`` is.

    The same text whichever experiment registers a version (a description that named the
    experiment would flip with every run of another one); each version's description and
    tags say which experiment, profile and run made it.

    Args:
        name: the registered model.
        inputs: the input shape without the batch, e.g. ``1, 28, 28``.
        dim_latent: the code size.
        what: the model, e.g. ``the MNIST denoising AE``.
    """
    # Names in code spans: the UI renders descriptions as Markdown, where <profile> is a tag.
    return (
        f"Encoder of {what}: inputs (N, {inputs}) to codes (N, {dim_latent}), registered by "
        "lfxai's experiments. Each version's description and tags (`lfxai.experiment`, "
        "`lfxai.profile`, `lfxai.run_name`, `lfxai.data_digest`, `test_loss`) say which run "
        "made it. Aliases: `@<profile>` (e.g. `@paper`) is the newest version of that profile, "
        "`@<experiment>-<profile>` (e.g. `@consistency_features-paper`) the newest that "
        "experiment trained, which its `pretrained=true` reuses. A plain torch.nn.Module: "
        f"`lfxai.load_encoder('models:/{name}@paper')`."
    )


class RegisteredModels:
    """The Model Registry as one run sees it (a base of :class:`~lfxai.tracking.Tracker`).

    Attributes:
        run_id: the run that logs and registers models.
        client: MLflow's client.
    """

    run_id: str
    client: MlflowClient

    def log_encoder_model(
        self,
        model: nn.Module,
        example: torch.Tensor,
        registered_model_name: str | None = None,
        module: str = "encoder",
    ) -> str:
        """Logs ``model``'s encoder as the artifact ``encoder``, without pickle.

        The artifact is an MLflow PyTorch model in MLflow's pickle-free ``pt2`` format (a
        ``torch.export`` graph, dynamic in the batch size), which the UI shows with its
        signature and input example, plus our recipe and tensor-only state as its extra
        files (:mod:`lfxai.models.stored`), from which :func:`load_encoder` rebuilds the
        module from our own code. A copy of the encoder is exported on the CPU in eval mode;
        the caller's module stays on its device with its own train/eval flags.

        Args:
            model: built by :func:`lfxai.models.registry.build_model` (``model.recipe``).
            example: a batch of inputs; its first two rows are the input example (two:
                ``torch.export`` fixes a batch size of one, and a single row is repeated).
            registered_model_name: registers the model under this name.
            module: the encoder's sub-module of ``model``.

        Returns:
            The model URI (``models:/<name>/<version>`` when registered).
        """
        from mlflow.models import infer_signature

        active = mlflow.active_run()
        if active is None or active.info.run_id != self.run_id:
            raise RuntimeError("log_encoder_model needs this tracker's run to be the active run")
        encoder = copy.deepcopy(model.get_submodule(module)).cpu().eval()
        rows = example[:2].detach().cpu()
        if len(rows) == 1:
            rows = torch.cat([rows, rows])
        with torch.no_grad():
            output = encoder(rows).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            files = write_encoder_files(model, module, Path(tmp))
            info = mlflow.pytorch.log_model(
                encoder,
                name="encoder",
                serialization_format="pt2",
                pip_requirements=[
                    f"torch=={torch.__version__.split('+')[0]}",
                    f"numpy=={np.__version__}",
                ],
                signature=infer_signature(rows.numpy(), output),
                input_example=rows.numpy(),
                registered_model_name=registered_model_name,
                extra_files=[str(file) for file in files],
            )
        if registered_model_name and info.registered_model_version is not None:
            return f"models:/{registered_model_name}/{info.registered_model_version}"
        return info.model_uri

    def register_encoder(
        self,
        model: nn.Module,
        example: torch.Tensor,
        name: str | None,
        test_loss: float,
        about: str,
        details: str = "",
        tags: dict[str, Any] | None = None,
        aliases: tuple[str, ...] | None = None,
    ) -> str:
        """Logs ``model``'s encoder and, given a ``name``, registers and describes it.

        Every version says which run made it: its description names the experiment,
        profile, run, test loss and data digest (the run's tags), its tags hold the same,
        and each alias moves onto it unless a newer version holds it already. By default two
        aliases move: the run's profile (``@paper``) and :func:`experiment_alias`
        (``@consistency_features-paper``).

        Args:
            model: built by :func:`lfxai.models.registry.build_model`.
            example: a batch of inputs; its first two rows are the input example.
            name: the registered model (:func:`registered_name`); None logs it only.
            test_loss: the trained model's loss on the test split.
            about: the registered model's description: what every version of it is.
            details: what sets this version apart (its settings), ending its description.
            tags: the version's own tags, beside those every version gets.
            aliases: moved onto this version instead of the default two (``()``: none).

        Returns:
            The model URI (``models:/<name>/<version>`` when registered).
        """
        uri = self.log_encoder_model(model, example, registered_model_name=name)
        if name is None or not uri.startswith(f"models:/{name}/"):
            return uri
        run = self.client.get_run(self.run_id).data.tags
        experiment, profile = run.get("lfxai.experiment", "?"), run.get("lfxai.profile")
        run_name, digest = run.get(RUN_NAME_TAG, self.run_id), run.get(DATA_DIGEST_TAG)
        parent = run.get("mlflow.parentRunId")
        if digest is None and parent:  # a nested run (pretext's tasks) trains on its parent's
            digest = self.client.get_run(parent).data.tags.get(DATA_DIGEST_TAG)
        digest = digest or "?"
        description = (
            f"{experiment} ({profile or '?'} profile), run '{run_name}' ({self.run_id}). "
            f"Test loss {test_loss:.6g}; data digest {digest}"
        )
        version_tags = {
            "lfxai.dataset": run.get("lfxai.dataset", "?"),
            "lfxai.experiment": experiment,
            "lfxai.profile": profile or "?",
            "lfxai.run_name": run_name,
            "lfxai.data_digest": digest,
            **(tags or {}),
            "test_loss": f"{test_loss:.6g}",
        }
        version = uri.rsplit("/", 1)[1]
        self.annotate_model_version(
            name,
            version,
            about,
            f"{description}; {details}." if details else f"{description}.",
            version_tags,
            aliases=default_aliases(experiment, profile) if aliases is None else aliases,
        )
        return uri

    def annotate_model_version(
        self,
        name: str,
        version: str,
        model_description: str,
        version_description: str,
        tags: dict[str, Any],
        aliases: tuple[str, ...] = (),
    ) -> None:
        """Describes a registered model and one of its versions; moves ``aliases`` onto it.

        Args:
            name: the registered model.
            version: the version this run registered.
            model_description: what every version of ``name`` is (set when it differs).
            version_description: what this version is (experiment, profile, loss, data).
            tags: set on the version.
            aliases: e.g. the profile (``paper``): ``models:/<name>@paper`` then loads this
                version, the newest of that profile.
        """
        model = self.client.get_registered_model(name)
        if model.description != model_description:
            self.client.update_registered_model(name, description=model_description)
        self.client.update_model_version(name, version, description=version_description)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, str(value))
        for alias in aliases:
            self.move_alias(name, alias, version)

    def move_alias(self, name: str, alias: str, version: str, attempts: int = 5) -> None:
        """Claims ``alias`` of ``name`` for ``version``; points it at the newest claimant.

        Workers sharing a tracking server register versions of one model at once, and the
        store has no compare-and-set for an alias: a write (read, then insert or update) can
        land after another worker's newer one and move the alias back, and two first
        inserts collide on the alias's unique key (PostgreSQL ``UniqueViolation``, a lost
        race, not an error). So a version first claims the alias with a tag
        (:func:`alias_claim_tag`); a worker writes the newest claimant, not its own version,
        and reads the claims again after writing. The worker that writes last saw every
        claim made before its final read, and a later claim's own worker writes after it,
        so the alias ends on the newest claimant. An older version finishing late never
        takes the alias from a newer one.
        """
        self.client.set_model_version_tag(name, version, alias_claim_tag(alias), "true")
        for attempt in range(1, attempts + 1):
            target = self.newest_claimant(name, alias)
            current = self.model_version_by_alias(name, alias)
            if current is None or int(current.version) < target:
                try:
                    self.client.set_registered_model_alias(name, alias, str(target))
                except MlflowException:
                    lost_race = current is None and self.model_version_by_alias(name, alias)
                    if not lost_race or attempt == attempts:
                        raise
                    continue
            if self.newest_claimant(name, alias) == target:
                return
        raise MlflowException(
            f"Alias {alias!r} of registered model {name!r}: new versions kept claiming it "
            f"while version {version} set it ({attempts} attempts); it points at "
            f"version {self.model_version_by_alias(name, alias).version}."
        )

    def newest_claimant(self, name: str, alias: str) -> int:
        """The newest version of ``name`` that claimed ``alias`` (see :meth:`move_alias`)."""
        claims = self.client.search_model_versions(
            f"name = '{name}' and tags.`{alias_claim_tag(alias)}` = 'true'",
            max_results=1,
            order_by=["version_number DESC"],
        )
        return int(claims[0].version)

    def tag_model_versions(self, tags: dict[str, str]) -> int:
        """Sets ``tags`` on every model version this run registered; returns how many."""
        versions = self.client.search_model_versions(f"run_id = '{self.run_id}'")
        for version in versions:
            for key, value in tags.items():
                self.client.set_model_version_tag(version.name, version.version, key, value)
        return len(versions)

    def model_versions(self, name: str) -> list[ModelVersion]:
        """The versions of registered model ``name``, newest first (empty: no such model)."""
        try:
            versions = self.client.search_model_versions(f"name = '{name}'")
        except MlflowException:
            return []
        return sorted(versions, key=lambda v: int(v.version), reverse=True)

    def model_version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version of ``name`` that ``alias`` (e.g. ``paper``) points to, or None."""
        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None

    def model_aliases(self, name: str) -> list[str]:
        """The aliases of registered model ``name`` (empty when it has none or is missing)."""
        try:
            return sorted(self.client.get_registered_model(name).aliases)
        except MlflowException:
            return []

    def registered_models(self, prefix: str = "") -> list[str]:
        """Names of the registered models starting with ``prefix``."""
        return sorted(
            m.name for m in self.client.search_registered_models() if m.name.startswith(prefix)
        )


def load_encoder(uri: str, device: str = "cpu") -> nn.Module:
    """An encoder logged by lfxai, rebuilt from our own code; nothing from the store runs.

    Only the model's ``MLmodel`` (YAML, read as data) and our two files are downloaded: the
    recipe is checked field by field, the module built through the model registry, and the
    weights read with ``torch.load(weights_only=True)`` and loaded strictly
    (:mod:`lfxai.models.stored`). MLflow's pickled or ``pt2`` model beside them is never read.

    Args:
        uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<run id>/encoder``
            or a local model folder.
        device: where the module goes.

    Returns:
        The encoder, in eval mode.

    Raises:
        EncoderRefused: no model there, a model without our files (a pickled model logged by an
            older lfxai: the message says how to re-register it), or files that are not a
            valid recipe and tensor state (the bad value named).
    """
    uri, location = model_location(uri)
    with tempfile.TemporaryDirectory() as tmp:
        _, _, stored = read_mlmodel(uri, location, tmp)
        wanted = [f"extra_files/{file}" for file in (RECIPE_FILE, STATE_FILE)]
        if not set(wanted) <= stored:
            raise EncoderRefused(
                f"{uri} has no {RECIPE_FILE} and {STATE_FILE}: it is a pickled model (logged by "
                "an lfxai older than its pickle-free format, or not by lfxai), never loaded "
                "because unpickling runs code; re-register it: rerun the experiment that "
                "logged it with pretrained=false (and register_model=true)"
            )
        recipe, state = (
            Path(mlflow.artifacts.download_artifacts(f"{location}/{path}", dst_path=tmp))
            for path in wanted
        )
        return load_encoder_files(recipe, state, uri, device)


def read_mlmodel(
    uri: str, location: str, dst: str
) -> tuple[Model, dict[str, Any] | None, set[str]]:
    """The ``MLmodel`` at ``location``, read as data (YAML, nothing runs), downloaded to ``dst``.

    Returns:
        The model, its ``pytorch`` flavor (None without one) and the paths of that flavor's
        extra files.

    Raises:
        EncoderRefused: no model at ``location``, or an ``MLmodel`` that is not an MLflow model
            file (damaged or tampered: the error named), in one line.
    """
    damaged = (MlflowException, yaml.YAMLError, TypeError, AttributeError, ValueError, KeyError)
    try:
        path = mlflow.artifacts.download_artifacts(f"{location}/MLmodel", dst_path=dst)
    except (MlflowException, OSError) as error:
        raise EncoderRefused(f"{uri}: no MLflow model there ({first_line(error)})") from None
    try:
        model = Model.load(path)
    except OSError as error:  # e.g. an MLmodel that is a folder
        raise EncoderRefused(f"{uri}: no MLflow model there ({first_line(error)})") from None
    except damaged as error:
        raise _damaged(uri, error) from None
    try:  # the shapes every reader relies on, checked here so none meets a bad one later
        flavor = model.flavors.get("pytorch")
        stored = {str(entry["path"]) for entry in (flavor or {}).get("extra_files") or []}
        if model.signature is not None and not isinstance(model.signature, ModelSignature):
            raise TypeError(f"signature of type {type(model.signature).__name__}")
    except (TypeError, AttributeError, KeyError) as error:
        raise _damaged(uri, error) from None
    return model, flavor, stored


def _damaged(uri: str, error: Exception) -> EncoderRefused:
    """The one-line refusal of a tampered or damaged ``MLmodel``."""
    return EncoderRefused(
        f"{uri}: its MLmodel is not an MLflow model file "
        f"({type(error).__name__}: {first_line(error)})"
    )


def model_location(uri: str) -> tuple[str, str]:
    """A model URI as ``(uri with an alias resolved to its version, artifact location)``.

    Registry URIs are resolved once, so that both files come from one version even while
    another worker moves the alias; ``runs:/`` URIs and local folders are their own location.

    Raises:
        EncoderRefused: no such registered model, alias, version or logged model.
    """
    if not uri.startswith("models:/"):
        return uri, uri.rstrip("/")
    client = MlflowClient()
    name, _, rest = uri.removeprefix("models:/").rstrip("/").partition("/")
    try:
        if "@" in name and not rest:
            name, alias = name.rsplit("@", 1)
            rest = str(client.get_model_version_by_alias(name, alias).version)
        elif not rest:  # models:/<model id>: a logged model, registered or not
            return uri, client.get_logged_model(name).artifact_location
        if not rest.isdigit():
            raise EncoderRefused(
                f"{uri}: expected models:/<name>@<alias>, models:/<name>/<version> or "
                "models:/<model id>"
            )
        return f"models:/{name}/{rest}", client.get_model_version_download_uri(name, rest)
    except MlflowException as error:
        raise EncoderRefused(f"{uri}: {first_line(error)}") from None


def first_line(error: BaseException) -> str:
    """An error's message, first line only (an MLflow error's stack trace left out)."""
    return (str(error).strip().splitlines() or [""])[0]  # str(MlflowException) is its message
