"""timm architectures by name, ``timm:<name>`` (timm is an optional extra: ``pip install 'dlapps[timm]'``).

Keyword arguments pass through to ``timm.create_model`` (``model.img_size=32``, ``model.patch_size=4``), so a
ViT for 32-pixel images is one command. ``model.pretrained=true`` asks for timm's own weights, fetched from the
Hugging Face hub only with ``--download`` (else read from its local cache). The normalisation, input size and
ImageNet class names come from timm's pretrained config where it has them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from dlapps.errors import CheckpointError, ConfigError, first_line

TIMM = "timm:"
INSTALL = "pip install 'dlapps[timm]'"


def timm_package() -> ModuleType:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"timm:<name> models need timm, which is not installed: {INSTALL}") from None
    return timm


def check_timm_name(arch: str) -> None:
    """A :class:`ConfigError` with the closest names unless timm has architecture ``arch`` (a tag may follow)."""
    timm = timm_package()
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch.partition(".")[0], timm.list_models(), n=5, cutoff=0.6)
        hint = f"closest: {', '.join(close)}" if close else "see timm.list_models()"
        raise ConfigError(f"timm has no model {arch!r}; {hint}")


def pretrained_config(arch: str) -> dict[str, Any]:
    """timm's pretrained config of ``arch`` (its default tag, or the one named): mean, std, input_size..."""
    check_timm_name(arch)
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(arch)
    return {} if config is None else config.to_dict()


def timm_model(arch: str, *, num_classes: int | None, in_shape: tuple[int, int, int], pretrained: bool = False,
               download: bool = False, **kwargs: Any) -> nn.Module:  # fmt: skip
    """timm's ``arch``, untrained (or with timm's weights: ``pretrained``, their own number of classes where
    ``num_classes`` is None), taking ``in_shape[0]`` channels; a keyword timm does not take is one line."""
    timm = timm_package()
    check_timm_name(arch)
    if num_classes is not None or not pretrained:
        kwargs["num_classes"] = num_classes
    try:
        if pretrained:
            return _with_hub_weights(timm, arch, download, in_chans=in_shape[0], **kwargs)
        return timm.create_model(arch, pretrained=False, in_chans=in_shape[0], **kwargs)
    except TypeError as exc:
        raise ConfigError(f"timm:{arch} does not take these settings: {exc}") from None


def _with_hub_weights(timm: ModuleType, arch: str, download: bool, **kwargs: Any) -> nn.Module:
    """timm's pretrained ``arch``: from the local Hugging Face cache, or from the hub where ``download`` allows."""
    try:
        with nullcontext() if download else _hub_cache_only(arch):
            return timm.create_model(arch, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        if not download:
            raise CheckpointError(
                f"timm's pretrained weights for {arch} are not in the Hugging Face cache; --download fetches them"
            ) from None
        raise CheckpointError(
            f"timm's pretrained weights for {arch} could not be fetched ({first_line(exc)})"
        ) from None


@contextmanager
def _hub_cache_only(arch: str) -> Iterator[None]:
    """For the time of one call, the Hugging Face hub is read from its local cache only (timm's weights that
    live at another address are looked for in torch's hub cache)."""
    import huggingface_hub.constants as hub

    config = pretrained_config(arch)
    if not config.get("hf_hub_id") and config.get("url"):
        from timm.models._hub import get_cache_dir

        if not (Path(get_cache_dir()) / Path(config["url"]).name).is_file():
            raise OSError("not cached")
    before, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = before
