"""Explaining models: gradient flow, class activation maps and their faithfulness."""

from dlapps.explain.cam import CAM_METHODS, compute_cam, normalize_maps
from dlapps.explain.faithfulness import Confidence, batched_maps, deletion_insertion, faithfulness, masked_confidence
from dlapps.explain.gradients import LayerGradients, layer_gradient_norms
from dlapps.explain.sanity import head_randomisation_check, randomised_head, rank_correlation

__all__ = [
    "CAM_METHODS",
    "Confidence",
    "LayerGradients",
    "batched_maps",
    "compute_cam",
    "deletion_insertion",
    "faithfulness",
    "head_randomisation_check",
    "layer_gradient_norms",
    "masked_confidence",
    "normalize_maps",
    "randomised_head",
    "rank_correlation",
]
