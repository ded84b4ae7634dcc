"""Explaining models: gradient flow, class activation maps and their faithfulness."""

from dlapps.explain.cam import METHODS as CAM_METHODS
from dlapps.explain.cam import compute_cam, normalize_maps
from dlapps.explain.faithfulness import Confidence, deletion_insertion, masked_confidence
from dlapps.explain.gradients import LayerGradients, layer_gradient_norms
from dlapps.explain.layers import capture_output, get_layer

__all__ = [
    "CAM_METHODS",
    "Confidence",
    "LayerGradients",
    "capture_output",
    "compute_cam",
    "deletion_insertion",
    "get_layer",
    "layer_gradient_norms",
    "masked_confidence",
    "normalize_maps",
]
