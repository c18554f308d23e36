"""Label-free feature importance on tiny encoders."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from captum._utils.gradient import compute_gradients
from captum.attr import GradientShap, IntegratedGradients, Saliency
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai.explanations.features import (
    FEATURE_METHODS,
    AuxiliaryFunction,
    RandomAttribution,
    _attribute_batch,
    _baselines_for,
    attribute_auxiliary,
    attribute_individual_dim,
    make_feature_method,
    summed_gradients,
)
from tests.numerics import assert_within_rounding


def _loader(n: int = 10, batch_size: int = 4) -> DataLoader:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(x, torch.zeros(n)), batch_size=batch_size)


def _linear_encoder() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3, bias=False)).eval()


@pytest.mark.parametrize("name", sorted(FEATURE_METHODS))
def test_every_method_gives_input_shaped_attributions(name, tiny_encoder):
    method = make_feature_method(name, tiny_encoder)
    scores = attribute_auxiliary(
        tiny_encoder,
        _loader(),
        torch.device("cpu"),
        method,
        torch.zeros(1, 1, 8, 8),
        progress=False,
    )
    assert scores.shape == (10, 1, 8, 8)
    assert np.isfinite(scores).all()


def test_unknown_method_names_the_choices(tiny_encoder):
    with pytest.raises(ValueError, match="GradientShap"):
        make_feature_method("Gradient Shap", tiny_encoder)


def test_saliency_is_the_gradient_of_the_auxiliary_function(tiny_encoder):
    loader = _loader()
    scores = attribute_auxiliary(
        tiny_encoder, loader, torch.device("cpu"), Saliency(tiny_encoder), progress=False
    )
    x = loader.dataset.tensors[0].clone().requires_grad_(True)
    reference = tiny_encoder(x).detach()
    (tiny_encoder(x) * reference).sum().backward()
    np.testing.assert_allclose(scores, x.grad.abs().numpy(), rtol=1e-5, atol=1e-7)


def test_integrated_gradients_batched_equals_one_at_a_time(tiny_encoder):
    """IG expands the batch by steps: each step must be paired with its own reference."""
    loader = _loader(n=6, batch_size=6)
    batched = attribute_auxiliary(
        tiny_encoder,
        loader,
        torch.device("cpu"),
        IntegratedGradients(tiny_encoder),
        torch.zeros(1, 1, 8, 8),
        progress=False,
    )
    single = attribute_auxiliary(
        tiny_encoder,
        DataLoader(loader.dataset, batch_size=1),
        torch.device("cpu"),
        IntegratedGradients(tiny_encoder),
        torch.zeros(1, 1, 8, 8),
        progress=False,
    )
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)


def test_gradient_shap_pairs_each_noise_sample_with_its_own_image():
    """For a linear encoder W the exact answer is (x - b) * W^T W x, whatever the samples.

    Captum expands GradientShap's batch with repeat_interleave; pairing the samples with
    `repeat`-ed references (as the reference implementation did) would mix images.
    """
    encoder = _linear_encoder()
    loader = _loader(n=5, batch_size=5)
    scores = attribute_auxiliary(
        encoder,
        loader,
        torch.device("cpu"),
        GradientShap(encoder),
        torch.zeros(1, 1, 8, 8),
        progress=False,
    )
    x = loader.dataset.tensors[0].reshape(5, 64)
    weight = encoder[1].weight
    expected = (x * (x @ weight.T @ weight)).reshape(5, 1, 8, 8)
    np.testing.assert_allclose(scores, expected.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_baseline_module_is_applied_per_batch(tiny_encoder):
    calls = []

    class Half(nn.Module):
        def forward(self, x):
            calls.append(len(x))
            return x / 2

    attribute_auxiliary(
        tiny_encoder,
        _loader(),
        torch.device("cpu"),
        IntegratedGradients(tiny_encoder),
        Half(),
        progress=False,
    )
    assert calls == [4, 4, 2]


def test_random_attribution_is_seeded_and_uniform():
    x = torch.zeros(3, 1, 4, 4)
    a = RandomAttribution(seed=5).attribute(x)
    b = RandomAttribution(seed=5).attribute(x)
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= 0 and a.max() <= 1


def test_individual_dim_scores_each_latent_unit():
    encoder = _linear_encoder()
    loader = _loader(n=4, batch_size=4)
    scores = attribute_individual_dim(
        encoder, 3, loader, torch.device("cpu"), Saliency(encoder), progress=False
    )
    assert scores.shape == (4, 3, 8, 8)
    x = loader.dataset.tensors[0]
    codes = encoder(x).detach()
    weight = encoder[1].weight.detach()
    # Saliency of f_j is |W_j| (abs of the gradient); score = |f_j(x) * |W_j||
    expected = torch.abs(codes[:, :, None] * weight.abs()[None]).reshape(4, 3, 8, 8)
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-5, atol=1e-7)


# -- exact rules on a linear encoder ---------------------------------------------------------
#
# For f(x) = W x the auxiliary function g(x') = <W x, W x'> has the constant gradient
# W^T W x, so IntegratedGradients (whatever its steps) and GradientShap (whatever its
# samples) both equal (x - b) * W^T W x exactly, and a method that ignores its baseline b
# or pairs an image with another image's reference gets another answer. The float32 error
# is bounded by rounding (tests/numerics.py): 64 + 2 roundings for W^T (W x), 50 for the
# sum over IG's 50 steps (weights summing to 1 up to 50 more), 2 for the product with x - b.
IG_ROUNDINGS = 64 + 2 + 50 + 50 + 2


def _linear_expectation(encoder, x, baseline):
    """``(exact, magnitude)`` of ``(x - b) * W^T W x`` in float64, for the rounding bound."""
    weight = encoder[1].weight.detach().double()
    flat, base = x.reshape(len(x), -1).double(), baseline.reshape(-1, 64).double()
    exact = (flat - base) * (flat @ weight.T @ weight)
    magnitude = (flat - base).abs() * (flat.abs() @ weight.abs().T @ weight.abs())
    return exact.reshape(x.shape), magnitude.reshape(x.shape)


@pytest.mark.parametrize("method", [IntegratedGradients, GradientShap])
def test_attributions_start_from_the_given_baseline_tensor(method):
    encoder = _linear_encoder()
    loader = _loader(n=6, batch_size=4)
    baseline = torch.full((1, 1, 8, 8), 0.25)
    scores = attribute_auxiliary(
        encoder, loader, torch.device("cpu"), method(encoder), baseline, progress=False
    )
    x = loader.dataset.tensors[0]
    exact, magnitude = _linear_expectation(encoder, x, baseline)
    assert_within_rounding(torch.from_numpy(scores), exact, magnitude, IG_ROUNDINGS)


def test_a_baseline_module_maps_each_batch_to_its_own_baselines():
    """A blur-like module: every image gets the baseline computed from itself (here x / 2)."""
    encoder = _linear_encoder()
    loader = _loader(n=5, batch_size=2)

    class Half(nn.Module):
        def forward(self, x):
            return x / 2

    scores = attribute_auxiliary(
        encoder, loader, torch.device("cpu"), IntegratedGradients(encoder), Half(), progress=False
    )
    x = loader.dataset.tensors[0]
    exact, magnitude = _linear_expectation(encoder, x, x / 2)
    assert_within_rounding(torch.from_numpy(scores), exact, magnitude, IG_ROUNDINGS)


def test_individual_dim_integrated_gradients_use_the_baseline_per_unit():
    """Unit j: g_j(x') = f_j(x') = W_j x', so IG = (x - b) * W_j and the score |f_j(x) IG_j|."""
    encoder = _linear_encoder()
    loader = _loader(n=3, batch_size=2)
    baseline = torch.full((1, 1, 8, 8), 0.5)
    scores = attribute_individual_dim(
        encoder,
        3,
        loader,
        torch.device("cpu"),
        IntegratedGradients(encoder),
        baseline,
        progress=False,
    )
    x = loader.dataset.tensors[0].reshape(3, 64).double()
    weight = encoder[1].weight.detach().double()
    codes = x @ weight.T  # (3, d)
    exact = (codes[:, :, None] * (x - 0.5)[:, None, :] * weight[None]).abs()
    magnitude = (x.abs() @ weight.abs().T)[:, :, None] * (x - 0.5).abs()[:, None] * weight.abs()
    # 64 roundings for the code, 50 + 50 for IG's steps and weights, 3 for the products.
    assert_within_rounding(
        torch.from_numpy(scores).reshape(3, 3, 64), exact, magnitude, 64 + 100 + 3
    )


def test_the_encoder_is_explained_in_eval_mode(tiny_encoder):
    """BatchNorm in train mode would use batch statistics: explanations must not."""
    loader = _loader()
    x = loader.dataset.tensors[0].clone().requires_grad_(True)
    reference = tiny_encoder(x).detach()  # eval mode (the fixture's)
    (tiny_encoder(x) * reference).sum().backward()
    tiny_encoder.train()
    scores = attribute_auxiliary(
        tiny_encoder, loader, torch.device("cpu"), Saliency(tiny_encoder), progress=False
    )
    assert not tiny_encoder.training
    np.testing.assert_allclose(scores, x.grad.abs().numpy(), rtol=1e-5, atol=1e-7)


def test_bare_tensor_batches_are_accepted():
    encoder = _linear_encoder()
    x = _loader(n=4).dataset.tensors[0]
    scores = attribute_auxiliary(
        encoder, [x[:3], x[3:]], torch.device("cpu"), Saliency(encoder), progress=False
    )
    with_labels = attribute_auxiliary(
        encoder,
        _loader(n=4, batch_size=3),
        torch.device("cpu"),
        Saliency(encoder),
        progress=False,
    )
    assert np.array_equal(scores, with_labels)


def test_random_method_by_name_is_seeded_and_ignores_the_model():
    x = torch.zeros(2, 1, 3, 3)
    a = make_feature_method("Random", nn.Identity(), seed=4).attribute(x)
    assert torch.equal(a, make_feature_method("Random", nn.Linear(1, 1), seed=4).attribute(x))
    assert not torch.equal(a, make_feature_method("Random", nn.Identity(), seed=5).attribute(x))
    method = RandomAttribution(seed=4)
    assert not torch.equal(method.attribute(x), method.attribute(x))  # a stream, not a constant
    for name, cls in FEATURE_METHODS.items():
        assert isinstance(make_feature_method(name, nn.Identity()), cls)


# -- exact messages, devices, warnings, progress ---------------------------------------------


def test_unknown_method_message_is_exact():
    with pytest.raises(ValueError) as error:
        make_feature_method("Gradient Shap", nn.Identity())
    assert str(error.value) == (
        "unknown feature method 'Gradient Shap'; valid choices: "
        "['GradientShap', 'IntegratedGradients', 'Random', 'Saliency']"
    )


def test_random_scores_and_baselines_follow_the_inputs_device():
    """The meta device stands in for a GPU."""
    inputs = torch.zeros(2, 1, 3, 3, device="meta")
    assert RandomAttribution(seed=0).attribute(inputs).device == inputs.device
    assert _baselines_for(inputs, torch.zeros(1, 1, 3, 3)).device == inputs.device
    assert _baselines_for(inputs, None) is None


def test_random_attribution_defaults_to_an_identity_forward_function():
    assert isinstance(RandomAttribution().forward_func, nn.Identity)
    encoder = nn.Linear(1, 1)
    assert RandomAttribution(encoder).forward_func is encoder
    first = RandomAttribution().attribute(torch.zeros(4))
    assert torch.equal(first, RandomAttribution(seed=0).attribute(torch.zeros(4)))  # seed 0


@pytest.mark.parametrize("name", ["Saliency", "IntegratedGradients", "GradientShap"])
def test_attribution_raises_no_warning_and_returns_plain_tensors(name):
    """Inputs are switched to requires_grad before Captum sees them (it would warn)."""
    encoder = _linear_encoder()
    x = _loader(n=3).dataset.tensors[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attr = _attribute_batch(
            make_feature_method(name, AuxiliaryFunction(encoder)),
            x,
            encoder(x).detach(),
            torch.zeros(1, 1, 8, 8) if name != "Saliency" else None,
        )
    assert not attr.requires_grad and attr.grad_fn is None


def test_progress_bars_name_the_method(capsys):
    encoder = _linear_encoder()
    attribute_auxiliary(encoder, _loader(n=2), torch.device("cpu"), Saliency(encoder))
    attribute_individual_dim(encoder, 3, _loader(n=2), torch.device("cpu"), Saliency(encoder))
    err = capsys.readouterr().err
    assert err.count("\rSaliency:   0%") == 2
    # leave=False: no bar is kept (a kept one ends its line) and the last line is blanked;
    # tqdm may draw "100%" before clearing when a step takes over 0.1 s, so not checked
    assert "\n" not in err and err.split("\r")[-2].isspace()
    attribute_auxiliary(
        encoder, _loader(n=2), torch.device("cpu"), Saliency(encoder), progress=False
    )
    attribute_individual_dim(
        encoder, 3, _loader(n=2), torch.device("cpu"), Saliency(encoder), progress=False
    )
    assert capsys.readouterr().err == ""


def test_random_method_by_name_keeps_the_forward_function():
    encoder = nn.Linear(1, 1)
    assert make_feature_method("Random", encoder).forward_func is encoder


def test_units_are_explained_in_one_call_per_batch_by_default():
    encoder = _linear_encoder()
    method = Saliency(encoder)
    calls = []
    real = method.attribute
    method.attribute = lambda inputs, **kwargs: (calls.append(len(inputs)), real(inputs, **kwargs))[
        1
    ]
    attribute_individual_dim(encoder, 3, _loader(n=5), torch.device("cpu"), method, progress=False)
    assert calls == [3 * 4, 3 * 1]  # d x batch rows per call, batches of 4 and 1


def test_random_method_by_name_defaults_to_seed_zero():
    x = torch.zeros(2, 3)
    by_name = make_feature_method("Random", nn.Identity()).attribute(x)
    assert torch.equal(by_name, RandomAttribution(seed=0).attribute(x))


def test_the_auxiliary_function_is_one_inner_product_per_example():
    inputs = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # N = 3 examples, d = 2
    reference = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    out = AuxiliaryFunction(nn.Identity())(inputs, reference)
    assert out.tolist() == [1.0, 4.0, 16.0]  # exact small integers


@pytest.mark.parametrize("name", ["GradientShap", "IntegratedGradients", "Saliency"])
def test_summed_gradients_give_captums_own_attributions_bit_for_bit(name, tiny_encoder):
    """One summed root instead of Captum's ``torch.unbind`` roots seeds the backward pass
    with the same tensor of ones, so no floating-point operation changes: exact equality."""
    x = _loader(n=6).dataset.tensors[0]
    baseline = torch.zeros(1, 1, 8, 8)
    ours = make_feature_method(name, tiny_encoder)
    torch.manual_seed(7)
    np.random.seed(7)  # GradientShap draws its baselines with NumPy, its noise with torch
    fast = attribute_auxiliary(
        tiny_encoder, [(x,)], torch.device("cpu"), ours, baseline, progress=False
    )
    assert ours.gradient_func is summed_gradients
    stock = make_feature_method(name, AuxiliaryFunction(tiny_encoder))
    assert stock.gradient_func is compute_gradients
    torch.manual_seed(7)
    np.random.seed(7)
    with torch.no_grad():
        reference = tiny_encoder(x)
    captum = _attribute_batch(stock, x, reference, baseline).numpy()
    assert np.array_equal(fast, captum)


def test_a_custom_gradient_function_is_kept(tiny_encoder):
    def own(forward_fn, inputs, target_ind=None, additional_forward_args=None):
        return compute_gradients(forward_fn, inputs, target_ind, additional_forward_args)

    method = Saliency(tiny_encoder)
    method.gradient_func = own
    attribute_auxiliary(tiny_encoder, _loader(), torch.device("cpu"), method, progress=False)
    assert method.gradient_func is own


def test_summed_gradients_refuse_a_target_and_several_outputs_per_example():
    x = torch.rand(3, 2, requires_grad=True)
    with pytest.raises(ValueError, match=r"^the auxiliary function takes no target, got target=1$"):
        summed_gradients(lambda t: t.sum(dim=1), (x,), target_ind=1)
    with pytest.raises(ValueError, match=r"one scalar output per example, .* shape \(3, 2\)$"):
        summed_gradients(lambda t: t * 2, (x,))
    (grad,) = summed_gradients(lambda t, w: (t * w).sum(dim=1), (x,), None, torch.tensor(3.0))
    assert torch.equal(grad, torch.full((3, 2), 3.0))
