"""A sanity check for saliency maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Maps that hardly change when the model's learned weights are replaced by random ones cannot be explaining what
the model learned. The first step of their cascading randomisation re-initialises the top layer: here the
classifier head. The check reports, per image, the Spearman rank correlation between the map of the trained
model and that of the same model with a randomised head, for the same target class: near 1 fails the check,
near 0 passes it.
"""

from __future__ import annotations

import copy
import warnings

import torch
from scipy.stats import ConstantInputWarning, spearmanr
from torch import nn

from dlapps.explain.cam import compute_cam
from dlapps.models.hooks import find_head


def randomised_head(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose classifier head (last ``nn.Linear``) is re-initialised as PyTorch initialises it."""
    randomised = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        find_head(randomised)[1].reset_parameters()
    return randomised


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation (ties at their average rank) between each pair of rows of ``a`` and ``b``;
    NaN where a row is constant (a map that is all zeros), which has no ranks to correlate."""
    rows = zip(a.flatten(1).double().cpu().numpy(), b.flatten(1).double().cpu().numpy(), strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return torch.tensor([spearmanr(x, y).statistic for x, y in rows], dtype=torch.float64)


def head_randomisation_check(
    method: str, model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor, seed: int = 0
) -> torch.Tensor:
    """Per image, the rank correlation of the maps of ``model`` and of its :func:`randomised_head` copy."""
    maps = compute_cam(method, model, x, layer, targets=targets)
    return rank_correlation(maps, compute_cam(method, randomised_head(model, seed), x, layer, targets=targets))
