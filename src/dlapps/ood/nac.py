"""NAC (neuron activation coverage): how often the ID training data put each neuron in the state an input
puts it in.

Liu, Tian, Li, Ma & Wang, "Neuron Activation Coverage: Rethinking Out-of-distribution Detection and
Generalization", ICLR 2024 (NAC-UE). A neuron's state combines its activation ``z`` with the gradient of the
KL divergence between the uniform distribution ``u`` and the softmax ``p`` (spatially averaged for feature
maps)::

    z^   = sigmoid(alpha * z * dKL(u || p(x)) / dz)                  in (0, 1), per neuron
    phi  = min(count_ID(bin(z^)) / O*, 1)                            a neuron's coverage
    S(x) = sum over layers of the mean of phi over the layer's neurons

``count_ID`` is a histogram of ``M`` bins per neuron, filled on the ID training data. As pytorch-ood 0.4's
``NACUE``, whose scores these equal (negated), the bins are geometric and symmetric (dense near 0 and 1, where
the sigmoid saturates; the official code's are uniform) and ``log p`` is ``log(p + 1e-12)``. Defaults are
pytorch-ood's (M = 50, alpha = 100, O* = 50, one value for all layers); the paper tunes them per layer on ID
validation data. ``layers`` names the layers whose outputs are the
neurons; by default the head's input (the pooled penultimate features, the paper's deepest layer).

Fitting and scoring need a backward pass per batch, so NAC is a :class:`Detector` with its own pass over the
ID data (``_fit_data``) and its own :meth:`score`, not an :class:`OutputDetector`. Parameters get no ``.grad``.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from dlapps.errors import DataError
from dlapps.models.hooks import capture, model_device, require_eval
from dlapps.ood.base import DETECTORS, Detector
from dlapps.ood.features import Batches, iter_batches

# pytorch-ood's log(p + 1e-12): classes with p far below 1e-12 give no gradient (the official code's exact
# log-softmax does); kept for equal scores, it changes NAC's ranking of confident images
PROBABILITY_EPSILON = 1e-12
SATURATION = 1e-6  # the outermost bin edges: states within this of 0 or 1 share the end bins


def neuron_states(
    model: nn.Module, x: torch.Tensor, layers: list[tuple[str, bool]], alpha: float
) -> list[torch.Tensor]:
    """One forward and backward pass: ``z^`` (N, neurons) of each of ``layers`` (name, whether its input rather
    than its output), with feature maps averaged over space."""
    with torch.enable_grad(), contextlib.ExitStack() as hooks:
        seen = [hooks.enter_context(capture(model, name, inputs=inputs)) for name, inputs in layers]
        logits = model(x.detach().requires_grad_(True))
        log_probabilities = torch.log(torch.softmax(logits, dim=1) + PROBABILITY_EPSILON)
        kl_to_uniform = -log_probabilities.mean(dim=1).sum()  # up to the constant -log C, per image
        activations = [captured[-1] for captured in seen]
        gradients = torch.autograd.grad(kl_to_uniform, activations)
    states = []
    for activation, gradient in zip(activations, gradients, strict=True):
        product = activation.detach() * gradient
        product = product.mean(dim=(2, 3)) if product.dim() == 4 else product.flatten(1)
        states.append(torch.sigmoid(alpha * product))
    return states


def geometric_bins(states: torch.Tensor, bins: int) -> torch.Tensor:
    """The bin (0..bins-1) of each state in (0, 1): ``bins / 2`` log-spaced bins from 0 to 1/2, mirrored above."""
    half = torch.logspace(math.log10(SATURATION), math.log10(0.5), bins // 2 + 1, device=states.device)
    edges = torch.cat([half, 1 - half.flip(0)[1:]]).to(states.dtype)
    bucket = torch.bucketize(states.clamp(SATURATION, 1 - SATURATION), edges) - 1
    return bucket.clamp(0, bins - 1)


@DETECTORS.register("nac")
class NAC(Detector):
    name = "NAC"
    needs_data = True
    cost = "slow"

    def __init__(self, layers: tuple[str, ...] = (), bins: int = 50, alpha: float = 100.0, o_star: int = 50) -> None:
        super().__init__()
        if bins < 2 or bins % 2:
            raise ValueError(f"bins must be an even number of at least 2, got {bins}")
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        if o_star <= 0:
            raise ValueError(f"o_star must be positive, got {o_star}")
        self.layers, self.bins, self.alpha, self.o_star = tuple(layers), bins, alpha, o_star

    def _hooked(self, head: str) -> list[tuple[str, bool]]:
        return [(name, False) for name in self.layers] or [(head, True)]

    def _fit_data(self, model: nn.Module, data: Batches, head: str, batch_size: int | None) -> NAC:
        """Count, per neuron, the ID training images in each bin of its state; bind to ``model``."""
        require_eval(model)
        self.counts: list[torch.Tensor] = []  # per layer: (neurons * bins,) then (neurons, bins)
        for x, _ in iter_batches(data, batch_size, model_device(model)):
            states = neuron_states(model, x, self._hooked(head), self.alpha)
            self.counts = self.counts or [s.new_zeros(s.shape[1] * self.bins, dtype=torch.long) for s in states]
            for counts, state in zip(self.counts, states, strict=True):
                offsets = torch.arange(state.shape[1], device=state.device) * self.bins  # neuron -> its first bin
                counts += torch.bincount((offsets + geometric_bins(state, self.bins)).flatten(), minlength=len(counts))
        if not self.counts:
            raise DataError("no batches to fit NAC on: the data is empty")
        self.counts = [counts.view(-1, self.bins) for counts in self.counts]
        self._model, self._head = model, head
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        model, head = self.bound()
        states = neuron_states(model, x.to(model_device(model)), self._hooked(head), self.alpha)
        coverage = torch.zeros(len(x), device=states[0].device)
        for counts, state in zip(self.counts, states, strict=True):
            hits = counts.gather(1, geometric_bins(state, self.bins).T).T  # (N, neurons): ID images in x's bins
            coverage += (hits.float() / self.o_star).clamp(max=1).mean(dim=1)
        return coverage
