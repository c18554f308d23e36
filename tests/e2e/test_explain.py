"""`mlflow run . -e explain`: label-free explanations of registered encoders, read back.

The encoder an earlier smoke run registered, and a module registered from this test (not an
lfxai model, MLflow's pt2 format), are explained through `mlflow run`; the second run's
arrays are checked against direct calls of the library on the same inputs. A module of each
data set's input shape is explained with that data set's own baseline (in-process, the
entry point's `main`), and each bad input ends its run FAILED with one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from torch import nn

from lfxai.cli import explain as runner
from lfxai.data.cifar10 import write_cifar10
from lfxai.data.dsprites import provision_dsprites
from lfxai.explain.pipeline import decoded
from lfxai.explanations.examples import DKNN, SimplEx
from lfxai.explanations.features import attribute_auxiliary, make_feature_method
from lfxai.metrics.consistency import encode, representation_shifts, similarity_per_example
from lfxai.plugins import get_dataset
from lfxai.plugins.base import replacement_for
from lfxai.tracking import load_explained_model
from tests.helpers import EXPERIMENT, make_store, mlflow_run, run_experiment
from tests.numerics import U32, gamma

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

TRAINED = "lfxai-mnist-denoising-ae-d4"  # what a smoke consistency_features run registers
SMOKE = {"n_test": 60, "n_train_explained": 40, "n_test_explained": 20}  # explain.yaml smoke
FEATURE_STEPS = [5, 10, 20, 50, 80, 100]
EXAMPLE_STEPS = [5, 10, 20, 50, 70, 100]
SHAPES = {  # one input of each data set
    "mnist": (1, 28, 28),
    "ecg5000": (140, 1),
    "cifar10": (3, 32, 32),
    "dsprites": (1, 64, 64),
}


@contextmanager
def _tracking(store: str) -> Iterator[MlflowClient]:
    mlflow.set_tracking_uri(store)
    try:
        yield MlflowClient(tracking_uri=store)
    finally:
        mlflow.set_tracking_uri(None)


def _linear(shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    """A user's encoder: flatten, then 6 linear units (its rounding errors have a bound)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), 6)).eval()


def _register(store: str, module: nn.Module, name: str, shape: tuple[int, ...]) -> str:
    """What the README asks of a user: the module logged in the pt2 format, registered."""
    with _tracking(store) as client:
        experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pytorch.log_model(
                module,
                name="encoder",
                serialization_format="pt2",
                input_example=torch.rand(2, *shape).numpy(),
                registered_model_name=name,
            )
        client.set_registered_model_alias(name, "prod", info.registered_model_version)
    return f"models:/{name}@prod"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def trained(store, data_dir):
    """The earlier smoke run: trains the MNIST denoising AE and registers its encoder."""
    params = {"name": "consistency_features", "profile": "smoke", "data_dir": str(data_dir)}
    params |= {"feature_methods": "Saliency,Random", "perturbation_percentages": "50"}
    return run_experiment("mnist", params, store)


@pytest.fixture(scope="module")
def users(store) -> dict[str, tuple[nn.Module, str]]:
    """Modules registered by the user's own code: a linear encoder per data set, one taking
    CIFAR-10's images, and one returning feature maps instead of codes."""
    modules = {f"user-{d}": (_linear(shape), d) for d, shape in SHAPES.items()}
    torch.manual_seed(0)
    modules["user-maps"] = (nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1)), "mnist")
    return {
        name: (module, _register(store, module, name, SHAPES[dataset]))
        for name, (module, dataset) in modules.items()
    }


def _explain_run(client: MlflowClient, dataset: str, uri: str):
    experiment = client.get_experiment_by_name(f"{dataset}-explain").experiment_id
    (run,) = client.search_runs([experiment], f"tags.`lfxai.model.uri` = '{uri}'")
    return client.get_run(run.info.run_id)  # with its model inputs (search_runs omits them)


def _array(client: MlflowClient, run_id: str, path: str, folder: Path) -> np.ndarray:
    return np.load(client.download_artifacts(run_id, path, str(folder)))


def _steps(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def test_explains_the_encoder_a_smoke_run_registered(store, trained, data_dir, tmp_path):
    client, source = trained
    uri = f"models:/{TRAINED}@smoke"
    params = {"model_uri": uri, "dataset": "mnist", "profile": "smoke", "data_dir": str(data_dir)}
    params |= {"feature_methods": "IntegratedGradients,GradientShap"}
    params |= {"example_methods": "DKNN,SimplEx", "n_test": "60"}
    result = mlflow_run("explain", params, store)
    assert result.returncode == 0, result.stderr[-4000:]
    run = _explain_run(client, "mnist", uri)
    run_id, tags = run.info.run_id, run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["mlflow.runName"].startswith(f"#1 {TRAINED}@smoke smoke feature_methods=")
    assert tags["lfxai.experiment"] == "explain" and tags["lfxai.dataset"] == "mnist"
    # Lineage: the exact version the alias pointed at, the run that made it, MLflow's input.
    assert {k: v for k, v in tags.items() if k.startswith("lfxai.model.")} == {
        "lfxai.model.uri": uri,
        "lfxai.model.resolved": f"models:/{TRAINED}/1",
        "lfxai.model.kind": "lfxai",
        "lfxai.model.name": TRAINED,
        "lfxai.model.version": "1",
        "lfxai.model.alias": "smoke",
        "lfxai.model.model_id": tags["lfxai.model.model_id"],
        "lfxai.model.source_run": source.info.run_id,
    }
    (model_input,) = run.inputs.model_inputs
    assert model_input.model_id == tags["lfxai.model.model_id"]
    assert client.get_logged_model(model_input.model_id).source_run_id == source.info.run_id
    assert run.data.params["config.feature_methods"] == "IntegratedGradients,GradientShap,Random"
    assert run.data.params["config.example_methods"] == "DKNN,SimplEx,Random"
    assert run.data.params["dim_latent"] == "4"

    methods = ["IntegratedGradients", "GradientShap", "Random"]
    for method in methods:
        steps = _steps(client, run_id, f"representation_shift/{method}")
        assert sorted(steps) == FEATURE_STEPS
        scores = _array(client, run_id, f"attributions/{method}.npy", tmp_path)
        assert scores.shape == (60, 1, 28, 28) and np.isfinite(scores).all()
    for method in ["DKNN", "SimplEx", "Random"]:
        for kind in ("top", "bottom"):
            steps = _steps(client, run_id, f"similarity_rate/{method}/{kind}")
            assert sorted(steps) == EXAMPLE_STEPS
        scores = _array(client, run_id, f"example_importance/{method}.npy", tmp_path)
        assert scores.shape == (20, 40)
    claims = {k for k in run.data.metrics if k.startswith("claims/holds/")}
    assert claims == {
        "claims/holds/shift_above_random/IntegratedGradients",
        "claims/holds/shift_above_random/GradientShap",
        "claims/holds/top_above_bottom/DKNN",
        "claims/holds/top_above_bottom/SimplEx",
    }
    paths = {a.path for a in client.list_artifacts(run_id)}
    assert {
        "claims.json",
        "claims.md",
        "claims_evidence.npz",
        "config.yaml",
        "consistency_features.csv",
        "consistency_features.png",
        "consistency_examples.csv",
        "consistency_examples.png",
        "saliency_examples.png",
        "top_bottom_examples.png",
    } <= paths
    # The encoder explained is the one trained: its codes of the same test images.
    trained_codes = _array(client, source.info.run_id, "codes/test.npy", tmp_path / "source")
    codes = _array(client, run_id, "codes/test.npy", tmp_path)
    np.testing.assert_allclose(codes, trained_codes[:60], rtol=1e-5, atol=1e-6)


def _dknn_bound(a: torch.Tensor, ea: torch.Tensor, b: torch.Tensor, eb: torch.Tensor):
    """``1 / ||a - b||^2`` of exact codes (float64) and a bound on the error of the float32
    computation from codes within ``ea`` / ``eb`` of them (per element).

    The squared distance of the rounded codes is within ``sum(2 |a - b| e + e^2)`` of the
    exact one (``e = ea + eb``), and its computation (difference, square, d-term sum, the
    root and square of ``cdist``) adds ``gamma(d + 4)`` of ``sum((|a - b| + e)^2)``; the
    reciprocal adds one rounding.
    """
    diff = (a[:, None] - b[None]).abs()
    e = ea[:, None] + eb[None]
    exact = diff.square().sum(-1)
    delta = (2 * diff * e + e.square()).sum(-1)
    delta += gamma(a.shape[1] + 4) * (diff + e).square().sum(-1)
    assert bool((delta < exact).all()), "codes too close for a bound"
    return 1 / exact, delta / (exact * (exact - delta)) + U32 / (exact - delta)


def test_explains_a_users_module_as_the_library_would(store, users, data_dir, tmp_path):
    """The logged arrays are the library's own results on the same inputs: bounded by
    float32 rounding for the linear encoder (any thread count, any BLAS path)."""
    module, uri = users["user-mnist"]
    params = {"model_uri": uri, "dataset": "mnist", "profile": "smoke", "data_dir": str(data_dir)}
    params |= {"feature_methods": "Saliency,IntegratedGradients"}
    result = mlflow_run("explain", params, store)
    assert result.returncode == 0, result.stderr[-4000:]
    with _tracking(store) as client:
        run = _explain_run(client, "mnist", uri)
        loaded, _ = load_explained_model(uri)
    run_id = run.info.run_id
    assert run.info.status == "FINISHED" and run.data.tags["lfxai.model.kind"] == "pt2"
    plugin = get_dataset("mnist")
    splits = plugin.load(str(data_dir), "standard", 42, 600, SMOKE["n_test"])
    x = splits.explain.x.double().flatten(1)
    weight, bias = (p.detach().double() for p in module[1].parameters())

    # Codes: one dot product of 784 terms plus the bias per unit.
    exact = x @ weight.T + bias
    magnitude = x.abs() @ weight.abs().T + bias.abs()
    logged = torch.from_numpy(_array(client, run_id, "codes/test.npy", tmp_path)).double()
    assert bool(((logged - exact).abs() <= gamma(785) * magnitude).all())
    # Saliency of <f(x), f(x')>: |W^T f(x)| (785 roundings for f(x), 7 for W^T f(x)).
    # IntegratedGradients from the black image: x * W^T f(x) times the 50 steps' weights
    # (summed: 50 roundings; each weight rounded to float32: 50 more; the product: 1).
    gradient, gradient_bound = exact @ weight, magnitude @ weight.abs()
    expected = {
        "Saliency": (gradient.abs(), gamma(792) * gradient_bound),
        "IntegratedGradients": (x * gradient, gamma(893) * x.abs() * gradient_bound),
    }
    baseline = plugin.baseline(splits.train)  # the black image
    for method, (values, bound) in expected.items():
        logged = _array(client, run_id, f"attributions/{method}.npy", tmp_path)
        direct = attribute_auxiliary(
            module, splits.explain.loader(30), "cpu", make_feature_method(method, module),
            baseline, progress=False,
        )  # fmt: skip
        for found in (logged, direct):  # both within rounding of the exact value
            error = (torch.from_numpy(found).double().flatten(1) - values).abs()
            assert bool((error <= bound).all()), method

    # Example importance of the logged subsets (balanced train, random test examples).
    train_idx = torch.from_numpy(_array(client, run_id, "subsets/train_idx.npy", tmp_path))
    test_idx = torch.from_numpy(_array(client, run_id, "subsets/test_idx.npy", tmp_path))
    train = decoded(splits.train.subset(train_idx))
    test = decoded(splits.explain).subset(test_idx)
    a, b = exact[test_idx], train.x.double().flatten(1) @ weight.T + bias
    eb = gamma(785) * (train.x.double().flatten(1).abs() @ weight.abs().T + bias.abs())
    dknn, bound = _dknn_bound(a, gamma(785) * magnitude[test_idx], b, eb)
    logged = torch.from_numpy(_array(client, run_id, "example_importance/DKNN.npy", tmp_path))
    direct = DKNN(module, X_train=train.x, progress=False).attribute(test.x)
    for found in (logged, direct):
        assert bool(((found.double() - dknn).abs() <= bound).all())
    random = _array(client, run_id, "example_importance/Random.npy", tmp_path)
    expected_random = torch.rand(20, 40, generator=torch.Generator().manual_seed(42))
    np.testing.assert_array_equal(random, expected_random.numpy())
    # SimplEx: 100 Adam steps have no a-priori rounding bound; the same call on the same
    # inputs (the graph loaded from the store) agrees far below the weights' scale (1/40).
    simplex = SimplEx(loaded, X_train=train.x, progress=False, simplex_steps=100).attribute(test.x)
    logged = _array(client, run_id, "example_importance/SimplEx.npy", tmp_path)
    np.testing.assert_allclose(logged, simplex.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(logged.sum(axis=1), 1.0, rtol=1e-5)
    # The curves are the similarity rates of the logged importance and labels.
    for method in ("DKNN", "SimplEx", "Random"):
        scores = torch.from_numpy(
            _array(client, run_id, f"example_importance/{method}.npy", tmp_path)
        )
        rates = similarity_per_example(scores, test.y, train.y, EXAMPLE_STEPS)
        logged = _steps(client, run_id, f"similarity_rate/{method}/top")
        for i, k in enumerate(EXAMPLE_STEPS):
            assert logged[k] == pytest.approx(rates["top"][i].mean().item(), abs=1e-6)


def _run_ids(client: MlflowClient) -> set[str]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, run_view_type=ViewType.ALL)
    return {r.info.run_id for r in runs}


@pytest.fixture()
def in_process(store, monkeypatch, capsys):
    """``explain(argv)`` runs the entry point's ``main`` here (no `mlflow run`, seconds
    saved) against the test's store; returns its exit code, stderr and the run it made."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(key, raising=False)
    client = MlflowClient(tracking_uri=store)

    def explain(argv: list[str]):
        before = _run_ids(client)
        code = runner.main([*argv, "--profile", "smoke"])
        (new,) = _run_ids(client) - before
        return code, capsys.readouterr().err, client.get_run(new)

    return explain


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model_uri", "models:/nobody-registered-this/1"],
            "models:/nobody-registered-this/1: Registered Model with name=nobody-registered-this "
            "not found",
        ),
        (
            ["--model_uri", "models:/user-mnist@paper"],
            "models:/user-mnist@paper: Registered model alias paper not found.",
        ),
        (
            ["--model_uri", "models:/user-cifar10@prod"],
            "models:/user-cifar10/1 takes inputs (N, 3, 32, 32) by its signature, but dataset "
            "'mnist' gives (N, 1, 28, 28); explain it on a data set of its input shape",
        ),
        (
            ["--model_uri", "models:/user-maps@prod"],
            "models:/user-maps/1 gives (2, 4, 14, 14) for 2 inputs of dataset 'mnist': "
            "label-free explanations need one code per input, (N, d); register an encoder "
            "that returns them (e.g. flatten its output)",
        ),
        (
            ["--model_uri", "models:/user-mnist@prod", "--example_methods", "TracIn,DKNN"],
            "example_methods ['TracIn'] differentiate the model's training loss (TracIn also "
            "sums over its training checkpoints), but models:/user-mnist/1 is a pt2 graph of "
            "an encoder's forward pass, which carries no loss; valid example_methods for it: "
            "['SimplEx', 'DKNN', 'Random']",
        ),
        (
            ["--model_uri", "models:/user-mnist@prod", "--dataset", "svhn"],
            "unknown dataset 'svhn'; valid choices: ['cifar10', 'dsprites', 'ecg5000', 'mnist']",
        ),
        (
            ["--model_uri", "models:/user-mnist@prod", "--feature_methods", "Occlusion"],
            "unknown feature_methods entry 'Occlusion'; valid choices: ['GradientShap', "
            "'IntegratedGradients', 'Random', 'Saliency']",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_failed_run(users, in_process, data_dir, argv, message):
    if "--dataset" not in argv:
        argv = [*argv, "--dataset", "mnist"]
    code, stderr, run = in_process([*argv, "--data_dir", str(data_dir)])
    assert code == runner.EXIT_BAD_INPUT
    # one line of ours (beside MLflow's download progress bars), no traceback
    assert [line for line in stderr.splitlines() if line.startswith("error")] == [
        f"error: {message}"
    ]
    assert "Traceback" not in stderr
    assert run.info.status == "FAILED"
    assert run.data.tags["lfxai.error"] == f"ConfigError: {message}"
    paths = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert not paths & {"attributions", "codes", "example_importance"}  # nothing explained


def test_bad_input_through_mlflow_run(store, users, data_dir):
    """The same refusal from the command line a user types: exit code, one line, FAILED."""
    params = {"model_uri": "models:/user-mnist@paper", "dataset": "mnist", "profile": "smoke"}
    result = mlflow_run("explain", {**params, "data_dir": str(data_dir)}, store)
    assert result.returncode != 0
    message = "models:/user-mnist@paper: Registered model alias paper not found."
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("error")] == [
        f"error: {message}"
    ]
    assert "Traceback" not in result.stderr
    with _tracking(store) as client:
        experiment = client.get_experiment_by_name("mnist-explain").experiment_id
        runs = client.search_runs(
            [experiment], "params.`config.model_uri` = 'models:/user-mnist@paper'"
        )
    assert runs and all(r.info.status == "FAILED" for r in runs)
    assert {r.data.tags["lfxai.error"] for r in runs} == {f"ConfigError: {message}"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A data folder with a generated CIFAR-10 and a small dSprites sub-grid (offline)."""
    folder = tmp_path_factory.mktemp("data")
    write_cifar10(folder / "cifar10", n_train=64, n_test=32, seed=0)
    provision_dsprites(folder / "dsprites", download=False, strides=(1, 5, 8, 4, 4))
    return folder


@pytest.mark.parametrize(
    ("dataset", "sizes"),
    [
        ("ecg5000", {"n_train": 60, "n_test": 30, "n_train_explained": 20, "n_test_explained": 16}),
        ("cifar10", {"n_train": 64, "n_test": 16, "n_train_explained": 20, "n_test_explained": 16}),
        (
            "dsprites",
            {"n_train": 200, "n_test": 40, "n_train_explained": 30, "n_test_explained": 20},
        ),
    ],
)
def test_every_dataset_explains_with_its_own_baseline(
    users, in_process, data_dir, generated, tmp_path, dataset, sizes
):
    module, uri = users[f"user-{dataset}"]
    folder = data_dir if dataset == "ecg5000" else generated
    argv = ["--model_uri", uri, "--dataset", dataset, "--data_dir", str(folder)]
    code, stderr, run = in_process([*argv, "--feature_methods", "Saliency"])
    assert code == 0, stderr[-4000:]
    assert run.info.status == "FINISHED" and run.data.tags["lfxai.dataset"] == dataset
    client, run_id = MlflowClient(), run.info.run_id
    n_test, shape = sizes["n_test"], SHAPES[dataset]
    for method in ("Saliency", "Random"):
        scores = _array(client, run_id, f"attributions/{method}.npy", tmp_path)
        assert scores.shape == (n_test, *shape) and np.isfinite(scores).all()
    importance = _array(client, run_id, "example_importance/DKNN.npy", tmp_path)
    assert importance.shape == (sizes["n_test_explained"], sizes["n_train_explained"])
    # At 100% every feature is the data set's baseline (ECG5000: the mean training beat,
    # CIFAR-10: the blurred image, dSprites: black), whatever the ranking: the shift is the
    # distance from the codes of the baseline, computed here by the library itself.
    plugin = get_dataset(dataset)
    split = run.data.params["config.split"]
    splits = plugin.load(str(folder), split, 42, sizes["n_train"], n_test)
    explained = decoded(splits.explain).x
    replaced = replacement_for(plugin.baseline(splits.train), explained).expand_as(explained)
    shift = representation_shifts(encode(module, explained, "cpu"), encode(module, replaced, "cpu"))
    at_100 = [
        _steps(client, run_id, f"representation_shift/{m}")[100] for m in ("Saliency", "Random")
    ]
    assert at_100 == pytest.approx([shift.mean().item()] * 2, rel=1e-4)
    assert "claims.json" in {a.path for a in client.list_artifacts(run_id)}
