"""ImageNet-1k's WordNet ids, which name the class folders of ImageNet and its subsets (Imagenette)."""

from __future__ import annotations

import functools
from importlib.resources import files


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k WordNet ids (``n01440764``...), sorted: the index of a wnid is its class index."""
    return tuple((files("dlapps.data") / "imagenet_wnids.txt").read_text(encoding="ascii").split())
