"""A loaded classifier and what an analysis must know about it: the classes of its outputs, its input, where
it came from. Built from a published checkpoint, a checkpoint written by dlapps, or an architecture and a
weights file (a user's own), always in eval mode and taking images in [0, 1].
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlapps.data import Dataset, ImageArrays
from dlapps.data.datasets import looks_like_path
from dlapps.errors import CheckpointError, ConfigError, DataError, first_line
from dlapps.models.hooks import eval_mode, feature_layer, find_head
from dlapps.models.imagenet import imagenet_categories
from dlapps.models.layout import fast_layout
from dlapps.models.pretrained import PRETRAINED, load_pretrained, pretrained_path
from dlapps.models.registry import (
    ARCHITECTURE,
    MODELS,
    architecture_title,
    create_model,
    default_normalization,
    is_architecture,
    source_of,
)
from dlapps.models.timm_models import TIMM, pretrained_config
from dlapps.models.weights import load_state_dict_checked, read_safetensors, read_weights, strip_module_prefix

CARD_KEY = "dlapps"  # the safetensors header entry of a dlapps checkpoint


@dataclass(frozen=True)
class Classifier:
    module: nn.Module  # in eval mode, takes images in [0, 1]
    title: str  # names the model in reports
    classes: tuple[str, ...] | None = None  # what the outputs stand for, where known
    trained_on: str | None = None  # the dataset or label space ("imagenet") of its outputs, where known
    in_shape: tuple[int, int, int] | None = None  # the input size it was made for, where fixed
    cam_layer: str | None = None  # the layer its class activation maps are usually computed on
    info: dict[str, Any] = field(default_factory=dict)  # JSON-ready: where it came from

    @property
    def num_outputs(self) -> int:
        return find_head(self.module)[1].out_features

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def explained_layer(self, example: torch.Tensor, layer: str | None = None) -> str:
        """The layer to explain: ``layer`` if given, else its known CAM layer, else its last spatial feature map
        (found by running ``example``, images in [0, 1] on its device)."""
        return layer or self.cam_layer or feature_layer(self.module, example)

    def describe(self) -> dict[str, Any]:
        """What identifies it in results and cache keys: its title, where it came from, and what it is known to
        score (its published accuracy, or its final test accuracy when trained here)."""
        info = {k: v for k, v in self.info.items() if k != "history"}
        history = self.info.get("history")
        reference = info.get("published") or (f"{history[-1]['test_acc']:.2%} test accuracy" if history else "")
        return {"title": self.title, **info, "reference": reference}

    def to(self, device: torch.device | str) -> Classifier:
        """Move to ``device``, in the layout that runs fastest there (:func:`~dlapps.models.layout.fast_layout`)."""
        fast_layout(self.module.to(device), torch.device(device))
        return self


def trained_on_title(name: str) -> str:
    """``imagenet`` -> ``ImageNet``, a registered dataset's name -> its title."""
    from dlapps.data import DATASETS

    return "ImageNet" if name == "imagenet" else DATASETS[name].title if name in DATASETS else name


def from_pretrained(
    name: str, root: str | Path | None = None, download: bool = False, weights: str | Path | None = None
) -> Classifier:
    """A published checkpoint by name (see :data:`PRETRAINED`), or ``weights`` of the same layout."""
    spec = PRETRAINED[name]
    path = Path(weights) if weights is not None else pretrained_path(name, root, download)
    classes = imagenet_categories() if spec.trained_on == "imagenet" else None
    return Classifier(
        load_pretrained(name, root, download, path),
        f"{spec.title} ({'published' if weights is None else 'given'} {trained_on_title(spec.trained_on)} weights)",
        classes,
        spec.trained_on,
        spec.in_shape,
        spec.cam_layer,
        {"kind": "pretrained", "name": name, "weights": str(path), "published": spec.accuracy},
    )


def checkpoint_card(path: str | Path) -> dict[str, Any] | None:
    """How the model of a dlapps checkpoint is built (its *card*), or None for another kind of file."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return None
    _, header = read_safetensors(path)
    try:
        return json.loads(header[CARD_KEY])["info"].get("card") if CARD_KEY in header else None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{path}: its dlapps header is not valid JSON; the file is damaged") from None


def build_from_card(card: dict[str, Any]) -> nn.Module:
    """The untrained model a checkpoint card describes."""
    return create_model(
        card["model"], num_classes=card["num_classes"], in_shape=tuple(card["in_shape"]), mean=tuple(card["mean"]),
        std=tuple(card["std"]), **card["hparams"],
    )  # fmt: skip


def from_checkpoint(path: str | Path) -> Classifier:
    """A model trained by dlapps (``dlapps train``, or any study), rebuilt from the card in its checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    card = checkpoint_card(path)
    if card is None:
        raise CheckpointError(
            f"{path} is not a checkpoint written by dlapps, so its architecture is unknown; give it as "
            "model=<architecture> with model.weights=<file> (and model.mean / model.std if it normalises)"
        )
    module = build_from_card(card)
    tensors, header = read_safetensors(path)
    history = json.loads(header[CARD_KEY])["info"].get("history")
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    load_state_dict_checked(module, state, source=str(path))
    return Classifier(
        module.eval(),
        f"{card['title']} trained on {card['dataset_title']} ({path.name})",
        tuple(card["classes"]),
        card["dataset"],
        tuple(card["in_shape"]),
        None,
        {"kind": "checkpoint", "path": str(path), "card": card, "history": history},
    )


def from_weights(
    arch: str,
    weights: str | Path,
    *,
    num_classes: int,
    in_shape: tuple[int, int, int],
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    **hparams: Any,
) -> Classifier:
    """An architecture (registered, ``torchvision:``, ``timm:`` or a factory; ``hparams``: its settings) with a
    user's weights file.

    The number of outputs is the file's where it differs from ``num_classes`` (a 1,000-class ImageNet model
    analysed on a 10-class subset keeps its 1,000 outputs). ``mean``/``std`` default to what the source's
    weights expect (:func:`~dlapps.models.registry.default_normalization`).
    """
    state = strip_module_prefix(read_weights(weights))
    if mean is None and std is None:
        mean, std = default_normalization(arch) or (None, None)
    build = dict(in_shape=in_shape, mean=mean, std=std, **hparams)
    module = create_model(arch, num_classes=num_classes, **build)
    head, linear = find_head(module)
    rows = state.get(f"{head}.weight")
    if rows is not None and rows.ndim == 2 and rows.shape[0] != linear.out_features:
        module = create_model(arch, num_classes=rows.shape[0], **build)
    load_state_dict_checked(module, state, source=str(weights))
    return _foreign(module, f"{architecture_title(arch)} ({Path(weights).name})", arch, hparams,
                    {"kind": "weights", "architecture": arch, "weights": str(weights), "mean": mean, "std": std})  # fmt: skip


def from_timm_pretrained(
    arch: str, *, in_shape: tuple[int, int, int], download: bool = False, mean=None, std=None, **hparams: Any
) -> Classifier:
    """timm's architecture ``arch`` (``timm:<name>``) with timm's own pretrained weights and their classes."""
    if mean is None and std is None:
        mean, std = default_normalization(arch) or (None, None)
    module = create_model(arch, num_classes=None, in_shape=in_shape, download=download, mean=mean, std=std,
                          pretrained=True, **hparams)  # fmt: skip
    return _foreign(module, f"{architecture_title(arch)} (timm's pretrained weights)", arch, hparams,
                    {"kind": "timm", "architecture": arch, "mean": mean, "std": std})  # fmt: skip


def _foreign(module: nn.Module, title: str, arch: str, hparams: dict[str, Any], info: dict[str, Any]) -> Classifier:
    """A classifier of an architecture with weights from elsewhere: ImageNet's classes for 1,000 outputs of a
    torchvision or timm model, the input size timm's config fixes (a ViT's, unless its settings change it)."""
    outputs = find_head(module)[1].out_features
    source = source_of(arch)
    imagenet = source in ("torchvision", "timm") and outputs == 1000
    in_shape = None
    if source == "timm":
        config = pretrained_config(arch.removeprefix(TIMM))
        if config.get("fixed_input_size") and "img_size" not in hparams and config.get("input_size"):
            in_shape = tuple(config["input_size"])
    return Classifier(module.eval(), title, imagenet_categories() if imagenet else None,
                      "imagenet" if imagenet else None, in_shape, None, {**info, "hparams": hparams})  # fmt: skip


def check_input(classifier: Classifier, shape: tuple[int, int, int], what: str) -> None:
    """One forward pass of a blank image of ``shape``: a model that cannot take it, or whose output is not one
    logit per class, is a one-line error."""
    if classifier.in_shape is not None and classifier.in_shape[0] != shape[0]:
        raise DataError(
            f"{what} has {shape[0]}-channel images but {classifier.title} takes {classifier.in_shape[0]} channels"
        )
    device = next(classifier.module.parameters()).device
    try:
        with torch.no_grad(), eval_mode(classifier.module):
            output = classifier.module(torch.zeros(1, *shape, device=device))
    except Exception as exc:  # a model of any origin may refuse an input in its own way (timm asserts sizes)
        made = f" (made for {classifier.in_shape})" if classifier.in_shape else ""
        raise DataError(
            f"{classifier.title}{made} cannot take the {shape} (C, H, W) images of {what} ({first_line(exc)}); "
            "set image_size to the size it takes"
        ) from None
    if not (isinstance(output, torch.Tensor) and output.ndim == 2 and output.is_floating_point()):
        found = (
            f"a tensor of shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else type(output).__name__
        )
        raise DataError(
            f"{classifier.title} is not an image classifier that dlapps can read: for one image it outputs {found}, "
            "not one logit per class (a tensor, a tuple whose first item is the logits, or a mapping with 'logits')"
        )


class ModelNames:
    """Config checker: a published checkpoint, an architecture (registered, ``torchvision:``, ``timm:``, a
    factory), or the path of a weights file."""

    @staticmethod
    def check(name: str) -> None:
        if name in PRETRAINED:
            return
        if is_architecture(name):
            ARCHITECTURE.check(name)
        elif looks_like_path(name) or Path(name).suffix in (".safetensors", ".th", ".pt", ".pth"):
            if not Path(name).expanduser().is_file():
                raise CheckpointError(f"model file {name} does not exist")
        else:
            raise ConfigError(
                f"unknown model {name!r}; published: {', '.join(PRETRAINED)}; architectures: {', '.join(MODELS)}; "
                "or torchvision:<arch>, timm:<name>, file.py:factory, or the path of a checkpoint written by dlapps"
            )


MODEL = ModelNames()


def class_outputs(
    classifier: Classifier, dataset: Dataset, data: ImageArrays, class_map: tuple[int, ...] | None = None
) -> tuple[int, ...] | None:
    """The model output of each class of ``data`` (None: output ``c`` is class ``c``), after checking that the
    model takes its images: ``class_map`` if given, else the label space model and dataset share (Imagenette's
    classes among ImageNet's outputs); a model of another number of outputs is a one-line error."""
    check_input(classifier, data.image_shape, dataset.title)
    outputs = classifier.num_outputs
    if class_map is not None:
        if len(class_map) != len(data.classes) or not all(0 <= c < outputs for c in class_map):
            raise DataError(
                f"model.class_map must give one output (0..{outputs - 1}) for each of the {len(data.classes)} "
                f"classes of {dataset.title}, got {len(class_map)} values"
            )
        return tuple(class_map)
    if outputs == len(data.classes):
        return None
    space = dataset.label_spaces.get(classifier.trained_on or "")
    if space is not None:
        return space
    shown = ", ".join(data.classes[:4]) + (", ..." if len(data.classes) > 4 else "")
    raise DataError(
        f"{classifier.title} has {outputs} outputs but {dataset.title} has {len(data.classes)} classes ({shown}); "
        "set model.class_map to the output of each class, or use a model trained on this dataset"
    )


def align_labels(
    classifier: Classifier, dataset: Dataset, data: ImageArrays, class_map: tuple[int, ...] | None = None
) -> ImageArrays:
    """``data`` with its labels as the classifier's outputs (see :func:`class_outputs`)."""
    outputs = class_outputs(classifier, dataset, data, class_map)
    if outputs is None:
        return data
    return data.relabel(outputs, classifier.classes or tuple(str(i) for i in range(classifier.num_outputs)))


def restrict(classifier: Classifier, outputs: tuple[int, ...], names: tuple[str, ...]) -> Classifier:
    """A copy of the classifier whose head keeps only ``outputs`` (in that order), named ``names``: a 1,000-way
    ImageNet model becomes a classifier of a dataset's 10 classes, with the same logits for them."""
    module = copy.deepcopy(classifier.module)
    head_name, head = find_head(module)
    kept = torch.tensor(outputs, device=head.weight.device)
    small = nn.Linear(head.in_features, len(outputs), bias=head.bias is not None).to(head.weight.device)
    with torch.no_grad():
        small.weight.copy_(head.weight[kept])
        if head.bias is not None:
            small.bias.copy_(head.bias[kept])
    parent, _, attribute = head_name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, attribute, small)
    return replace(classifier, module=module, title=f"{classifier.title}, its outputs for {len(outputs)} classes",
                   classes=tuple(names))  # fmt: skip
