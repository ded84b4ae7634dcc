"""Models, built by name through one registry (see :func:`create_model`).

Convention: every model takes images in [0, 1] and owns its input normalisation (``mean``/``std``).
"""

from dlapps.models.cifar_resnet import CifarResNet
from dlapps.models.imagenet import imagenet_categories
from dlapps.models.layers import Normalize
from dlapps.models.mlp import MLP, ResidualMLP
from dlapps.models.pretrained import PRETRAINED, load_pretrained, pretrained_path
from dlapps.models.registry import create_model, list_models, register_model
from dlapps.models.small_cnn import SmallCNN
from dlapps.models.weights import load_state_dict_checked, load_weights, read_weights

__all__ = [
    "MLP",
    "PRETRAINED",
    "CifarResNet",
    "Normalize",
    "ResidualMLP",
    "SmallCNN",
    "create_model",
    "imagenet_categories",
    "list_models",
    "load_state_dict_checked",
    "load_pretrained",
    "load_weights",
    "pretrained_path",
    "read_weights",
    "register_model",
]
