"""Models, built by name through one registry (see :func:`create_model`), and loaded classifiers.

Convention: every model takes images in [0, 1] and owns its input normalisation (``mean``/``std``).
"""

from dlapps.models.cifar_resnet import CifarResNet
from dlapps.models.classifier import Classifier, check_input, from_checkpoint, from_pretrained, from_weights
from dlapps.models.imagenet import imagenet_categories
from dlapps.models.layers import Normalize
from dlapps.models.mlp import MLP, ResidualMLP
from dlapps.models.pretrained import PRETRAINED, PretrainedSpec, load_pretrained, pretrained_path
from dlapps.models.registry import MODELS, create_model, list_models, torchvision_model
from dlapps.models.small_cnn import SmallCNN
from dlapps.models.weights import load_state_dict_checked, load_weights, read_weights

__all__ = [
    "MLP",
    "MODELS",
    "PRETRAINED",
    "CifarResNet",
    "Classifier",
    "Normalize",
    "PretrainedSpec",
    "ResidualMLP",
    "SmallCNN",
    "check_input",
    "create_model",
    "from_checkpoint",
    "from_pretrained",
    "from_weights",
    "imagenet_categories",
    "list_models",
    "load_pretrained",
    "load_state_dict_checked",
    "load_weights",
    "pretrained_path",
    "read_weights",
    "torchvision_model",
]
