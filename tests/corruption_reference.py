"""imagecorruptions, the reference the corruption tests and benchmarks/corruption_agreement.py compare against,
made to run on today's numpy and scikit-image, image by image.

Two shims, applied to its module only: scikit-image's ``gaussian`` lost ``multichannel=True`` (now
``channel_axis=-1``; glass blur uses it) and numpy 2 lost ``np.float_`` (fog's plasma fractal uses it).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources is deprecated
    import imagecorruptions
    from imagecorruptions import corruptions as reference
from skimage.filters import gaussian as _skimage_gaussian


def _gaussian(image, sigma=1, multichannel=False, **options):
    return _skimage_gaussian(image, sigma=sigma, channel_axis=-1 if multichannel else None, **options)


class _Numpy:
    """numpy with ``float_`` (removed in numpy 2) back, for the reference module's globals only."""

    float_ = np.float64

    def __getattr__(self, name: str):
        return getattr(np, name)


reference.gaussian = _gaussian
reference.np = _Numpy()


def reference_corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """uint8 (N, C, H, W) images corrupted one by one by imagecorruptions (its numpy RNG seeded with ``seed``; impulse
    noise alone draws from a fresh scikit-image generator, so it differs from call to call); uint8 (N, 3, H, W), as
    it returns RGB for grey images too."""
    np.random.seed(seed)
    out = [imagecorruptions.corrupt(image, corruption_name=name, severity=severity)
           for image in images.permute(0, 2, 3, 1).numpy()]  # fmt: skip
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
