"""The classifier a study analyses, by name: :class:`ClassifierSpec`.

A model is a published checkpoint by name, an architecture (registered, ``torchvision:``, ``timm:`` or a user's
``file.py:factory``) trained here on the study's dataset (:class:`~dlapps.train.model_spec.ModelSpec` says
how), the same architecture with a user's weights file (or timm's own weights), or a checkpoint written by
dlapps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from dlapps.config import require
from dlapps.data import Dataset, ImageArrays, normalization
from dlapps.models.classifier import (
    MODEL,
    Classifier,
    checkpoint_card,
    from_checkpoint,
    from_pretrained,
    from_timm_pretrained,
    from_weights,
)
from dlapps.models.pretrained import PRETRAINED, weights_need
from dlapps.models.registry import check_settings, default_normalization, is_architecture, source_of
from dlapps.models.timm_models import TIMM, pretrained_config

S = TypeVar("S", bound="ClassifierSpec")


@dataclass(frozen=True)
class ClassifierSpec:
    """The classifier a study analyses, named by ``name``:

    - a published checkpoint (``resnet20_cifar10``, ``mobilenet_v2_imagenet``, ...), ``weights`` optionally
      a file of the same layout;
    - an architecture (``small_cnn``, ``resnet20``, ``torchvision:resnet18``, ``timm:vit_tiny_patch16_224``,
      ``my_net.py:build``...), its settings in ``hparams`` (``model.<key>=<value>``): with ``weights``, a
      user's checkpoint of it; with a timm model's ``pretrained=true``, timm's own weights; otherwise trained
      here on the study's dataset (as :class:`~dlapps.train.model_spec.ModelSpec` says);
    - the path of a checkpoint written by dlapps (``dlapps train``), which says all the rest itself.

    ``mean``/``std`` are the normalisation a user's weights expect (default: the dataset's; ImageNet's for a
    torchvision architecture); ``class_map`` the model output of each dataset class, for a model with more
    outputs than the dataset has classes (found by itself for ImageNet models on ImageNet WordNet-id folders).
    """

    shorthand: ClassVar[str] = "name"
    keywords: ClassVar[dict[str, str]] = {"": "hparams"}  # any other key is a setting of the architecture

    name: Annotated[str, MODEL] = "resnet20_cifar10"
    weights: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_map: tuple[int, ...] | None = None
    hparams: tuple[tuple[str, Any], ...] = ()  # the architecture's settings, as sorted (key, value) pairs

    def validate(self) -> None:
        require(
            not self.hparams or is_architecture(self.name),
            f"{self.name} is not an architecture, so it takes no settings ({', '.join(k for k, _ in self.hparams)})",
        )
        if self.hparams and is_architecture(self.name):
            check_settings(self.name, [k for k, _ in self.hparams if k != "pretrained"])
        require(not self.timm_pretrained or self.weights is None, "give either pretrained=true or weights, not both")
        require(
            "pretrained" not in dict(self.hparams) or source_of(self.name) == "timm",
            "pretrained=true takes timm's own weights, so it goes with a timm:<name> model",
        )
        require(
            self.weights is None or self.kind != "checkpoint",
            f"{self.name} is a checkpoint file; weights go with an architecture name",
        )
        require(
            self.weights is None or Path(self.weights).expanduser().is_file(),
            f"weights file {self.weights} does not exist",
        )
        require((self.mean is None) == (self.std is None), "give mean and std together")
        if self.mean is not None and self.std is not None:
            require(len(self.mean) == len(self.std), "mean and std must have one value per channel")
            require(all(s > 0 for s in self.std), f"std must be positive, got {self.std}")

    @property
    def timm_pretrained(self) -> bool:
        return bool(dict(self.hparams).get("pretrained"))

    @property
    def kind(self) -> str:
        """``pretrained``, ``checkpoint``, ``weights`` (an architecture and a file), ``timm`` (timm's own weights)
        or ``train`` (trained here)."""
        if self.name in PRETRAINED:
            return "pretrained"
        if not is_architecture(self.name):
            return "checkpoint"
        if self.timm_pretrained:
            return "timm"
        return "weights" if self.weights else "train"

    @property
    def is_published(self) -> bool:
        """The published checkpoint itself (the one reference numbers are about), not a file in its place."""
        return self.kind == "pretrained" and self.weights is None

    def input_size(self) -> int | None:
        """The square input size the model was made for, where its name or file says (None: not fixed)."""
        if self.kind == "pretrained":
            return PRETRAINED[self.name].in_shape[-1]
        if self.kind in ("weights", "timm") and source_of(self.name) == "timm":
            size = dict(self.hparams).get("img_size")
            config = pretrained_config(self.name.removeprefix(TIMM))
            return size if isinstance(size, int) else config["input_size"][-1] if config.get("input_size") else None
        card = checkpoint_card(Path(self.name).expanduser()) if self.kind == "checkpoint" else None
        return card["in_shape"][-1] if card else None


def with_stand_in(spec: S, stand_in: str | None, root: Path, download: bool = False) -> tuple[S, str | None]:
    """``spec``, or the published ``stand_in`` and why it stands in (None: it does not). A published model whose
    weights are not in the data root gives way when they cannot be fetched (no public address) or are not to be
    (no ``download``) and the stand-in's weights are there or can be fetched; otherwise the missing weights are
    an error, before any work."""
    need = weights_need(spec.name, root) if spec.is_published else None
    if need is None or stand_in is None or need.present() or (need.resource is not None and download):
        return spec, None
    fetchable = need.resource is not None
    if fetchable and not weights_need(stand_in, root).present():
        return spec, None  # the stand-in would need a download too: name the model's own weights
    chosen, absent = PRETRAINED[stand_in], PRETRAINED[spec.name]
    why = "`--download` fetches it" if fetchable else "it has no public address"
    reason = (f"{absent.title}'s weights file is not in the data root ({need.paths[0]}; {why}), so the "
              f"published {chosen.title}, {chosen.accuracy}, explains the images in its place")  # fmt: skip
    return type(spec)(stand_in), reason


def load_classifier(
    spec: ClassifierSpec, dataset: Dataset, data: ImageArrays, root: str | Path | None = None, download: bool = False
) -> Classifier:
    """The classifier of a spec that is not trained here: published weights, a dlapps checkpoint, timm's weights,
    or a user's weights for an architecture (normalised with ``spec.mean`` / ``std``, else as the architecture's
    source expects (:func:`~dlapps.models.registry.default_normalization`), else with the dataset's statistics,
    measured on its evaluation split ``data`` where it publishes none)."""
    kind = spec.kind
    if kind == "pretrained":
        return from_pretrained(spec.name, root, download, spec.weights)
    if kind == "checkpoint":
        return from_checkpoint(Path(spec.name).expanduser())
    settings = {k: v for k, v in spec.hparams if k != "pretrained"}
    mean, std = spec.mean, spec.std
    if mean is None:
        mean, std = default_normalization(spec.name) or normalization(dataset, data)
    if kind == "timm":
        return from_timm_pretrained(spec.name, in_shape=data.image_shape, download=download, mean=mean, std=std,
                                    **settings)  # fmt: skip
    return from_weights(
        spec.name, Path(spec.weights).expanduser(), num_classes=len(data.classes), in_shape=data.image_shape,
        mean=mean, std=std, **settings,
    )  # fmt: skip
