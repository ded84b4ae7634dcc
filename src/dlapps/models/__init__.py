"""Models, built by name through one registry (see :func:`create_model`)."""

from dlapps.models.mlp import MLP, ResidualMLP
from dlapps.models.registry import create_model, list_models, register_model

__all__ = ["MLP", "ResidualMLP", "create_model", "list_models", "register_model"]
