"""Label-free feature importance: any Captum attribution applied to ``<f(x), f(x')>``.

For an encoder ``f`` and a test input ``x`` the auxiliary scalar function
``g_x(x') = <f(x), f(x')>`` turns the latent representation into a single output that
ordinary feature attribution methods can explain.

References:
    Crabbé & van der Schaar, "Label-Free Explainability for Unsupervised Models", ICML 2022.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import numpy as np
import torch

# Private module: Captum's default gradient function, recognised to be replaced (see below).
from captum._utils.gradient import compute_gradients
from captum.attr import Attribution, GradientShap, IntegratedGradients, Saliency
from torch import nn
from tqdm.auto import tqdm

from lfxai.explanations.examples.per_sample_grads import rnn_differentiable
from lfxai.training import channels_last_on_cpu


class AuxiliaryFunction(nn.Module):
    """``g(x', r) = <f(x'), r>`` for a batch of inputs ``x'`` and references ``r``.

    The reference representations travel as Captum's ``additional_forward_args``: Captum
    then expands them exactly like the inputs (``repeat`` for IntegratedGradients' steps,
    ``repeat_interleave`` for GradientShap's noise samples), so every perturbed input is
    always paired with the representation of its own original image.

    Args:
        black_box: the encoder ``f``, ``(N, ...) -> (N, d)``.
    """

    def __init__(self, black_box: nn.Module) -> None:
        super().__init__()
        self.black_box = black_box

    def forward(self, inputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return torch.sum(self.black_box(inputs) * reference, dim=-1)


class RandomAttribution(Attribution):
    """Uniform random importance scores: the baseline every method must beat.

    Args:
        forward_func: ignored except for Captum compatibility.
        seed: seed of the private generator, so runs are reproducible.
    """

    def __init__(self, forward_func: nn.Module | None = None, seed: int = 0) -> None:
        super().__init__(forward_func if forward_func is not None else nn.Identity())
        self.generator = torch.Generator().manual_seed(seed)

    def attribute(self, inputs: torch.Tensor, *args, **kwargs) -> torch.Tensor:  # noqa: ARG002
        scores = torch.rand(inputs.shape, generator=self.generator)
        return scores.to(inputs.device)


FEATURE_METHODS: dict[str, type[Attribution]] = {
    "GradientShap": GradientShap,
    "IntegratedGradients": IntegratedGradients,
    "Saliency": Saliency,
    "Random": RandomAttribution,
}
# Methods whose scores do not depend on the model they are given (a seeded generator's).
MODEL_FREE_METHODS = frozenset({"Random"})


def summed_gradients(
    forward_fn: Callable[..., torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    target_ind: object = None,
    additional_forward_args: object = None,
) -> tuple[torch.Tensor, ...]:
    """Captum's ``compute_gradients`` for a forward function with one scalar per example.

    Captum differentiates ``torch.unbind(outputs)``: one autograd root per output (25,000 for
    IntegratedGradients' 50 steps on 500 images), which the engine seeds one by one; that
    took about 40 % of IntegratedGradients' time on the MNIST encoder. The gradient of
    ``outputs.sum()`` reaches the graph as the same tensor of ones, so every attribution is
    bitwise the same (a test checks it against Captum's own function).

    Args:
        forward_fn: maps ``(*inputs, *additional_forward_args)`` to outputs ``(N,)``.
        inputs: the tensors to differentiate with respect to.
        target_ind: must be None (the auxiliary function has no target).
        additional_forward_args: a tuple (or one object) of further arguments, or None.

    Returns:
        The gradients, one per input tensor.
    """
    if target_ind is not None:
        raise ValueError(f"the auxiliary function takes no target, got target={target_ind!r}")
    extra = additional_forward_args
    if extra is None:
        extra = ()
    elif not isinstance(extra, tuple):
        extra = (extra,)
    with torch.enable_grad():
        outputs = forward_fn(*inputs, *extra)
        if outputs.dim() == 0 or outputs[0].numel() != 1:
            raise ValueError(
                "expected one scalar output per example, got outputs of shape "
                f"{tuple(outputs.shape)}"
            )
        return torch.autograd.grad(outputs.sum(), inputs)


def _use_auxiliary(attr_method: Attribution, encoder: nn.Module) -> None:
    """Points ``attr_method`` at the auxiliary function of ``encoder``.

    A method that computes gradients with Captum's default ``compute_gradients`` gets
    :func:`summed_gradients` instead (``gradient_func`` is the attribute Captum's gradient
    attributions call; it is set in their constructor and has no setter).
    """
    attr_method.forward_func = AuxiliaryFunction(encoder)
    if getattr(attr_method, "gradient_func", None) is compute_gradients:
        attr_method.gradient_func = summed_gradients


def make_feature_method(name: str, forward_func: nn.Module, seed: int = 0) -> Attribution:
    """A feature attribution method by its display name (see ``FEATURE_METHODS``)."""
    if name not in FEATURE_METHODS:
        raise ValueError(
            f"unknown feature method {name!r}; valid choices: {sorted(FEATURE_METHODS)}"
        )
    if name == "Random":
        return RandomAttribution(forward_func, seed=seed)
    return FEATURE_METHODS[name](forward_func)


def _accepts_baselines(attr_method: Attribution) -> bool:
    return "baselines" in inspect.signature(attr_method.attribute).parameters


def _baselines_for(
    inputs: torch.Tensor, baseline: torch.Tensor | nn.Module | None
) -> torch.Tensor | None:
    if isinstance(baseline, nn.Module):
        return baseline(inputs)
    if isinstance(baseline, torch.Tensor):
        return baseline.to(inputs.device)
    return None


def _attribute_batch(
    attr_method: Attribution,
    inputs: torch.Tensor,
    reference: torch.Tensor,
    baseline: torch.Tensor | nn.Module | None,
) -> torch.Tensor:
    kwargs: dict = {"additional_forward_args": (reference,)}
    baselines = _baselines_for(inputs, baseline)
    # Saliency's second positional argument is `target`, not a baseline: pass by name only.
    if baselines is not None and _accepts_baselines(attr_method):
        kwargs["baselines"] = baselines
    # Captum's gradient methods need gradients with respect to the inputs and warn ("did not
    # already require gradients") each time they have to switch them on: do it here instead.
    inputs = inputs.detach().requires_grad_()
    return attr_method.attribute(inputs, **kwargs).detach()


def _inputs_of(batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, list | tuple) else batch


def attribute_auxiliary(
    encoder: nn.Module,
    data_loader: Iterable,
    device: torch.device,
    attr_method: Attribution,
    baseline: torch.Tensor | nn.Module | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Label-free importance of every input feature for every example of a loader.

    Args:
        encoder: black box ``f`` mapping inputs to representations ``(N, d)``.
        data_loader: yields ``(inputs, labels)`` (labels unused) or bare input batches.
        device: where to compute.
        attr_method: a Captum attribution (Saliency, IntegratedGradients, GradientShap, ...)
            or :class:`RandomAttribution`; its ``forward_func`` is replaced by the auxiliary
            function, so it may be constructed with any module (as in the toy example), and
            Captum's default gradient function by :func:`summed_gradients` (same results).
        baseline: a tensor broadcastable to the inputs, a module mapping inputs to baselines
            (e.g. a Gaussian blur) or None (the method's default).
        progress: show a tqdm bar over batches.

    Returns:
        Attributions with the shape of the concatenated inputs, e.g. ``(N, 1, 28, 28)``.
    """
    encoder.eval()
    _use_auxiliary(attr_method, encoder)
    attributions = []
    device = torch.device(device)
    # Captum differentiates the encoder in eval mode: an RNN on CUDA needs cuDNN off. On
    # the CPU, convolutions in the channels-last layout are faster (see the training loop).
    with rnn_differentiable(encoder, device), channels_last_on_cpu(encoder, device):
        for batch in tqdm(data_loader, desc=_name(attr_method), disable=not progress, leave=False):
            inputs = _inputs_of(batch).to(device)
            with torch.no_grad():
                reference = encoder(inputs)
            scores = _attribute_batch(attr_method, inputs, reference, baseline)
            attributions.append(scores.cpu().contiguous())  # the default layout, as the inputs
    return torch.cat(attributions).numpy()


def attribute_individual_dim(
    encoder: nn.Module,
    dim_latent: int,
    data_loader: Iterable,
    device: torch.device,
    attr_method: Attribution,
    baseline: torch.Tensor | nn.Module | None = None,
    progress: bool = True,
    batch_units: bool = True,
) -> np.ndarray:
    """Importance of the input features for each latent unit ``f_j`` separately.

    Each unit is explained through the auxiliary function with the one-hot reference
    ``e_j``; the score is ``|f_j(x) * attr_j(x)|`` as in the paper's disentanglement study.
    By default every unit of a batch is explained in ONE attribution call: the batch is
    repeated d times (unit-major), each copy paired with its unit's one-hot reference, so
    one forward and one backward pass serve all units. That saves calls, not arithmetic: it
    pays on a GPU, while on a CPU the per-unit loop can be as fast or faster
    (``benchmarks/unit_attribution.py`` measures both). Reduce the loader's batch size to
    bound memory: a call holds ``d x batch`` inputs (times the method's samples or steps).

    Args:
        encoder: black box ``f`` mapping inputs to representations ``(N, dim_latent)``.
        dim_latent: number of latent units ``d``.
        data_loader: yields ``(inputs, labels)`` or bare input batches.
        device: where to compute.
        attr_method: a Captum attribution or :class:`RandomAttribution`.
        baseline: as for :func:`attribute_auxiliary`.
        progress: show a tqdm bar over batches.
        batch_units: explain all units in one call per batch (False: one call per unit).

    Returns:
        ``(N, d, *feature_shape)`` with the channel axis summed, e.g. ``(N, d, H, W)`` for
        one-channel images.
    """
    encoder.eval()
    _use_auxiliary(attr_method, encoder)
    eye = torch.eye(dim_latent, device=device)
    attributions = []
    device = torch.device(device)
    with rnn_differentiable(encoder, device), channels_last_on_cpu(encoder, device):  # as above
        for batch in tqdm(data_loader, desc=_name(attr_method), disable=not progress, leave=False):
            inputs = _inputs_of(batch).to(device)
            with torch.no_grad():
                codes = encoder(inputs)
            if batch_units:
                attr = _attribute_all_units(attr_method, inputs, eye, baseline)
            else:
                attr = torch.stack(
                    [
                        _attribute_batch(
                            attr_method, inputs, eye[j].expand(len(inputs), -1), baseline
                        )
                        for j in range(dim_latent)
                    ],
                    dim=1,
                )
            # attr: (B, d, *input_shape); scale each unit's map by its code value.
            weights = codes.view(*codes.shape, *[1] * (attr.dim() - 2))
            scaled = torch.abs(weights * attr)
            scores = scaled.sum(dim=2) if attr.dim() == 5 else scaled
            attributions.append(scores.cpu().contiguous())
    return torch.cat(attributions).numpy()


def _attribute_all_units(
    attr_method: Attribution,
    inputs: torch.Tensor,
    eye: torch.Tensor,
    baseline: torch.Tensor | nn.Module | None,
) -> torch.Tensor:
    """Attributions ``(B, d, ...)`` of every unit in one call on the d-times repeated batch."""
    d, batch = len(eye), len(inputs)
    repeated = inputs.repeat(d, *[1] * (inputs.dim() - 1))  # row u * B + i = inputs[i]
    references = eye.repeat_interleave(batch, dim=0)  # row u * B + i = e_u
    attr = _attribute_batch(attr_method, repeated, references, baseline).contiguous()
    return attr.view(d, batch, *attr.shape[1:]).transpose(0, 1)


def _name(attr_method: Attribution) -> str:
    return type(attr_method).__name__
