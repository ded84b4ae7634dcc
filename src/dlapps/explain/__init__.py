"""Explaining models: gradient flow (and, later, class activation maps)."""

from dlapps.explain.gradients import LayerGradients, layer_gradient_norms

__all__ = ["LayerGradients", "layer_gradient_norms"]
