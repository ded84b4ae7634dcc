"""Published checkpoints by name: found under the data root, or fetched once when the user allows it.

A name fixes the architecture, the file, the input normalisation the weights were trained with and the
classes the outputs stand for, so a loaded model takes images in [0, 1] like every other dlapps model.
Add one with ``@PRETRAINED.register(name, ...)`` on the function that builds its architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from dlapps.data.downloads import RESOURCES, Need, Resource, ensure, weights_resource
from dlapps.data.roots import resolve_data_root
from dlapps.errors import CheckpointError
from dlapps.models.registry import IMAGENET_MEAN, IMAGENET_STD, create_model
from dlapps.models.weights import load_weights
from dlapps.registry import Registry


@dataclass(frozen=True)
class PretrainedSpec:
    name: str
    build: Callable[..., nn.Module]  # the untrained architecture: build(num_classes=, in_shape=, mean=, std=)
    title: str  # for reports
    trained_on: str  # the dataset (a registered name) or label space ("imagenet") its outputs are the classes of
    num_classes: int
    in_shape: tuple[int, int, int]
    filename: str  # looked for in <data root>/weights/
    url: str | None  # None: no public address, the file is placed by hand
    mean: tuple[float, ...]
    std: tuple[float, ...]
    accuracy: str  # what the weights are known to score, for reports
    cam_layer: str  # last conv feature maps, followed by global average pooling ...
    classifier: str  # ... and this linear layer
    sha256: str | None = None  # of the published file, checked when it is downloaded
    size: int = 0  # bytes of the published file

    @property
    def resource(self) -> Resource | None:
        """How ``--download`` and ``dlapps fetch --only <name>`` get the file (None: it is placed by hand)."""
        if not (self.url and self.sha256):
            return None
        return weights_resource(self.name, self.title, self.url, self.sha256, self.size, self.filename)


# ``@PRETRAINED.register(name, title=..., trained_on=..., ...)`` (the fields of :class:`PretrainedSpec`) on the
# function that builds the untrained architecture.
PRETRAINED: Registry[PretrainedSpec] = Registry(
    "pretrained model", CheckpointError, entry=lambda name, build, **info: PretrainedSpec(name, build, **info)
)


@PRETRAINED.register(
    "resnet20_cifar10", title="ResNet-20", trained_on="cifar10", num_classes=10, in_shape=(3, 32, 32),
    filename="resnet20_cifar10_akamaster-12fca82f.th",
    url="https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/resnet20-12fca82f.th",
    mean=IMAGENET_MEAN, std=IMAGENET_STD, accuracy="91.73% on the CIFAR-10 test set", cam_layer="layer3",
    classifier="linear", sha256="12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8", size=1_099_231,
)  # fmt: skip
def resnet20_cifar10(**architecture: Any) -> nn.Module:
    """He et al.'s CIFAR ResNet-20, as trained by akamaster/pytorch_resnet_cifar10."""
    return create_model("resnet20", **architecture)


@PRETRAINED.register(
    "mobilenet_v2_imagenet", title="MobileNetV2", trained_on="imagenet", num_classes=1000, in_shape=(3, 224, 224),
    filename="mobilenet_v2_imagenet.safetensors",
    url=None,  # a conversion shipped with the project's data, trained on inputs scaled to [-1, 1]
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    accuracy="71.75% top-1 on Imagenette validation images over all 1,000 classes", cam_layer="features.18",
    classifier="classifier.1",
)  # fmt: skip
def mobilenet_v2_imagenet(**architecture: Any) -> nn.Module:
    return create_model("mobilenet_v2", **architecture)


@PRETRAINED.register(
    "resnet18_imagenet", title="ResNet-18", trained_on="imagenet", num_classes=1000, in_shape=(3, 224, 224),
    filename="resnet18-f37072fd.pth",
    url="https://download.pytorch.org/models/resnet18-f37072fd.pth",  # torchvision's IMAGENET1K_V1
    mean=IMAGENET_MEAN, std=IMAGENET_STD, accuracy="69.76% top-1 on ImageNet (torchvision)", cam_layer="layer4",
    classifier="fc", sha256="f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec", size=46_830_571,
)  # fmt: skip
def resnet18_imagenet(**architecture: Any) -> nn.Module:
    return create_model("resnet18", **architecture)


def downloadable() -> dict[str, Resource]:
    """Everything ``dlapps fetch`` can get: the datasets' downloads and the published weights with an address."""
    weights = {name: spec.resource for name, spec in PRETRAINED.items() if spec.resource is not None}
    return {**dict(RESOURCES.items()), **weights}


def weights_need(name: str, data_root: str | Path | None = None) -> Need:
    """The weights file of ``name`` as something a run reads from the data root."""
    spec = PRETRAINED[name]
    path = resolve_data_root(data_root) / "weights" / spec.filename
    return Need(f"{spec.title} weights ({name})", (path,), spec.resource)


def pretrained_path(name: str, data_root: str | Path | None = None, download: bool = False) -> Path:
    """Where the weights of ``name`` are: ``<data root>/weights/<file>``, downloaded there if allowed."""
    need = weights_need(name, data_root)
    ensure([need], resolve_data_root(data_root), download)
    return need.paths[0]


def load_pretrained(
    name: str, data_root: str | Path | None = None, download: bool = False, weights: str | Path | None = None
) -> nn.Module:
    """The model of ``name`` with its published weights (or ``weights``, a file of the same layout), in eval mode."""
    spec = PRETRAINED[name]
    path = Path(weights) if weights is not None else pretrained_path(name, data_root, download)
    model = spec.build(num_classes=spec.num_classes, in_shape=spec.in_shape, mean=spec.mean, std=spec.std)
    return load_weights(model, path).eval()
