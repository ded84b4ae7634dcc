"""The 15 common corruptions of Hendrycks & Dietterich (2019, "Benchmarking neural network robustness to common
corruptions and perturbations"), batched in torch, at severities 1-5.

Parameters and formulas follow ``imagecorruptions`` (Michaelis et al. 2019), the any-image-size version of the
authors' code; what it computes with scipy, scikit-image, OpenCV or PIL is computed here with torch
(convolutions, ``F.interpolate``, ``grid_sample``) on whole batches. Deterministic corruptions match it to a grey
level or so; random ones match it in distribution. Every function takes float images (N, C, H, W) in [0, 1] on
any device and returns the same shape, dtype and device; random draws come from the ``torch.Generator`` given
(on its own device, then moved), so a seed fixes the result. Registered corruptions (:data:`CORRUPTIONS`,
``@CORRUPTIONS.register(name, category=..., colour=...)`` on ``corrupt(images, severity, generator)``) with
``colour=True`` need RGB: grey images are repeated to RGB for them and brought back as ITU-R 601 luma.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import io
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from dlapps.data.arrays import ImageArrays
from dlapps.errors import ConfigError, DataError
from dlapps.registry import Registry

SEVERITIES = (1, 2, 3, 4, 5)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as OpenCV's RGB2GRAY

Apply = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: ``apply(images, severity, generator)`` on float RGB or grey images in [0, 1]."""

    name: str
    apply: Apply
    category: str  # noise, blur, weather or digital, as in the paper
    colour: bool = False  # needs three channels (grey images are converted there and back)


CORRUPTIONS: Registry[Corruption] = Registry(
    "corruption", ConfigError, entry=lambda name, apply, **info: Corruption(name, apply, **info)
)


def corrupt(images: torch.Tensor, name: str, severity: int, *, generator: torch.Generator) -> torch.Tensor:
    """``images`` (N, C, H, W) float in [0, 1], C = 1 or 3, corrupted by ``name`` at ``severity`` (1-5)."""
    check_corruption(name, severity)
    if images.dim() != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
        raise DataError(f"corruptions take float images (N, C, H, W) in [0, 1] with 1 or 3 channels, got "
                        f"{images.dtype} {tuple(images.shape)}")  # fmt: skip
    entry = CORRUPTIONS[name]
    if entry.colour and images.shape[1] == 1:
        return luma(entry.apply(images.expand(-1, 3, -1, -1), severity, generator))
    return entry.apply(images, severity, generator)


def check_corruption(name: str, severity: int) -> None:
    """A ConfigError for an unknown corruption (naming the closest) or a severity outside 1-5."""
    if name not in CORRUPTIONS:
        close = difflib.get_close_matches(name, CORRUPTIONS.names(), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(f"unknown corruption {name!r}; {hint}known: {', '.join(CORRUPTIONS.names())}")
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ConfigError(f"corruption severity must be an integer from 1 to 5, got {severity!r}")


def luma(images: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3, H, W) to grey (N, 1, H, W)."""
    return (images * images.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _uniform(
    generator: torch.Generator, like: torch.Tensor, shape: tuple[int, ...], low: float, high: float
) -> torch.Tensor:
    """Uniform draws in [low, high) made on the generator's device, then moved to ``like``'s device and dtype."""
    draws = torch.rand(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return (low + (high - low) * draws).to(like)


# ---------------------------------------------------------------------------------------------------------------
# Filters shared by several corruptions


def gaussian_taps(sigma: float, truncate: float) -> torch.Tensor:
    """scipy's 1-D Gaussian filter weights: radius ``int(truncate * sigma + 0.5)``, summing to 1 (float64)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def _pad_symmetric(images: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Pad by mirroring with the edge pixel repeated (scipy's ``reflect``, numpy's ``symmetric``)."""
    images = torch.cat([images[..., :rows, :].flip(-2), images, images[..., images.shape[-2] - rows :, :].flip(-2)], -2)
    return torch.cat([images[..., :cols].flip(-1), images, images[..., images.shape[-1] - cols :].flip(-1)], -1)


def reflect_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Mirror ``pad`` pixels onto every side without repeating the edge (OpenCV's default border), reflecting again
    where the pad is wider than the image, as OpenCV does."""
    while pad > 0:
        step = min(pad, images.shape[-2] - 1, images.shape[-1] - 1)
        if step < 1:
            return F.pad(images, (pad, pad, pad, pad), mode="replicate")  # a one-pixel image has nothing to mirror
        images, pad = F.pad(images, (step, step, step, step), mode="reflect"), pad - step
    return images


def separable_filter(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str) -> torch.Tensor:
    """Each channel correlated with ``rows`` down and ``cols`` across (odd lengths), the border padded by ``mode``:
    torch's ``replicate`` or ``reflect`` (OpenCV's default), or ``symmetric`` (scipy's ``reflect``)."""
    n, c, h, w = images.shape
    pad_rows, pad_cols = len(rows) // 2, len(cols) // 2
    flat = images.reshape(n * c, 1, h, w)
    if mode == "symmetric":
        flat = _pad_symmetric(flat, pad_rows, pad_cols)
    else:
        flat = F.pad(flat, (pad_cols, pad_cols, pad_rows, pad_rows), mode=mode)
    flat = F.conv2d(flat, rows.to(images).view(1, 1, -1, 1))
    flat = F.conv2d(flat, cols.to(images).view(1, 1, 1, -1))
    return flat.reshape(n, c, h, w)


def gaussian_blur(
    images: torch.Tensor, sigma: float | tuple[float, float], *, truncate: float = 4.0, mode: str = "replicate"
) -> torch.Tensor:
    """scikit-image's ``gaussian`` (scipy's ``gaussian_filter``) per channel; ``sigma`` one value or (rows, cols);
    the default border mode is scikit-image's (``nearest``, torch's ``replicate``)."""
    sigma_rows, sigma_cols = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    return separable_filter(images, gaussian_taps(sigma_rows, truncate), gaussian_taps(sigma_cols, truncate), mode)


def motion_blur_at(images: torch.Tensor, radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' motion blur: a weighted sum of copies of each image shifted along its direction
    ``angles`` (N,) in degrees, by whole pixels with the border pixel repeated; the weights are a half-Gaussian of
    ``sigma`` over ``2 * radius + 1`` shifts, and shifts that leave the image are dropped (not renormalised)."""
    n, c, h, w = images.shape
    width = 2 * radius + 1
    steps = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(steps**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).tolist()
    radians = torch.deg2rad(angles.double().cpu())
    along_rows, along_cols = width * torch.sin(radians), width * torch.cos(radians)
    length = torch.hypot(along_rows, along_cols)
    dy = -torch.ceil(steps[:, None] * along_rows / length - 0.5).long()  # (width, N)
    dx = -torch.ceil(steps[:, None] * along_cols / length - 0.5).long()
    inside = ((dy.abs() < h) & (dx.abs() < w)).long().cumprod(0).bool()  # the reference stops at the first outside
    rows, cols = torch.arange(h), torch.arange(w)
    blurred = torch.zeros_like(images)
    for weight, shift_y, shift_x, keep in zip(weights, dy, dx, inside, strict=True):
        if not keep.any():
            break
        row_index = (rows[None, :] - shift_y[:, None]).clamp(0, h - 1).to(images.device)  # (N, H)
        col_index = (cols[None, :] - shift_x[:, None]).clamp(0, w - 1).to(images.device)  # (N, W)
        shifted = images.gather(2, row_index[:, None, :, None].expand(n, c, h, w))
        shifted = shifted.gather(3, col_index[:, None, None, :].expand(n, c, h, w))
        blurred += (weight * keep.to(images)).view(n, 1, 1, 1) * shifted
    return blurred


def clipped_zoom(images: torch.Tensor, factor: float) -> torch.Tensor:
    """The centre ``1 / factor`` of each image scaled up ``factor`` times (bilinear, scipy's ``zoom`` grid): at least
    the image's size, of which imagecorruptions keeps the top-left image-sized corner."""
    h, w = images.shape[-2:]
    crop_h, crop_w = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    centre = images[..., top : top + crop_h, left : left + crop_w]
    size = (round(crop_h * factor), round(crop_w * factor))
    return F.interpolate(centre, size=size, mode="bilinear", align_corners=True)


def displace(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Each pixel (y, x) sampled at (y + dy, x + dx) (N, H, W), bilinear, the image mirrored about its edges
    beyond them (scipy's ``map_coordinates(order=1, mode="reflect")``)."""
    n, _, h, w = images.shape
    rows = torch.arange(h, device=images.device, dtype=images.dtype).view(1, h, 1)
    cols = torch.arange(w, device=images.device, dtype=images.dtype).view(1, 1, w)
    grid = torch.stack([(2 * (cols + dx) + 1) / w - 1, (2 * (rows + dy) + 1) / h - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# ---------------------------------------------------------------------------------------------------------------
# Noise


@CORRUPTIONS.register("gaussian_noise", category="noise")
def gaussian_noise(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Sensor noise in low light: i.i.d. N(0, σ²) added per pixel and channel, σ from imagecorruptions."""
    sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    noise = torch.randn(images.shape, generator=generator, device=generator.device, dtype=images.dtype)
    return (images + sigma * noise.to(images.device)).clamp(0, 1)


@CORRUPTIONS.register("shot_noise", category="noise")
def shot_noise(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Photon noise: each value becomes Poisson(λ x) / λ, fewer photons λ (from imagecorruptions) at higher
    severity."""
    photons = (60, 25, 12, 5, 3)[severity - 1]
    rates = (images * photons).to(generator.device)
    return (torch.poisson(rates, generator=generator).to(images) / photons).clamp(0, 1)


@CORRUPTIONS.register("impulse_noise", category="noise")
def impulse_noise(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Salt-and-pepper noise (bit errors): a fraction of the values, from imagecorruptions, each set to 0 or 1
    with equal odds, per channel (scikit-image's ``random_noise(mode="s&p")``)."""
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    flipped = _uniform(generator, images, images.shape, 0, 1) < amount
    salted = _uniform(generator, images, images.shape, 0, 1) < 0.5
    return torch.where(flipped, salted.to(images), images)


# ---------------------------------------------------------------------------------------------------------------
# Blur


def _disk_kernel(radius: int, alias_blur: float) -> torch.Tensor:
    """imagecorruptions' defocus kernel: a disk of ``radius`` (at least a 17 x 17 grid), normalised, then
    antialiased by OpenCV's GaussianBlur (3 x 3, or 5 x 5 above radius 8; mirrored border)."""
    half = max(radius, 8)
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).double()
    size = 3 if radius <= 8 else 5
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * alias_blur**2))
    taps = taps / taps.sum()
    return separable_filter((disk / disk.sum())[None, None], taps, taps, "reflect")[0, 0]


@CORRUPTIONS.register("defocus_blur", category="blur")
def defocus_blur(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """An out-of-focus lens: each channel convolved with an antialiased disk; (radius, alias blur) from
    imagecorruptions; mirrored border, as OpenCV's filter2D. Through the FFT, as OpenCV does for kernels this large
    (3-5 times faster than a direct convolution here); the disk is symmetric, so convolving is correlating."""
    radius, alias_blur = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
    kernel = _disk_kernel(radius, alias_blur).to(images)
    n, c, h, w = images.shape
    pad = kernel.shape[-1] // 2
    padded = reflect_pad(images.reshape(n * c, 1, h, w), pad)[:, 0]
    size = padded.shape[-2:]
    blurred = torch.fft.irfft2(torch.fft.rfft2(padded) * torch.fft.rfft2(kernel, s=size), s=size)
    return blurred[:, 2 * pad :, 2 * pad :].reshape(n, c, h, w).clamp(0, 1)


def _copy_schedule(h: int, w: int, delta: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The pixels glass blur rewrites, grouped into steps that can run at once with the result of the reference's
    one-at-a-time loop (rows bottom-up, then columns right-to-left): a pixel waits ``2 * delta`` steps per row
    below it and one per column right of it, so any two pixels whose neighbourhoods overlap keep their order, and
    the pixels of one step read and write disjoint neighbourhoods."""
    rows = torch.arange(h - delta, delta, -1)
    cols = torch.arange(w - delta, delta, -1)
    grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")
    step = (2 * delta * (h - delta - grid_rows) + (w - delta - grid_cols)).flatten()
    order = step.argsort(stable=True)
    counts = torch.bincount(step).tolist()
    return list(zip(grid_rows.flatten()[order].split(counts), grid_cols.flatten()[order].split(counts), strict=True))


def local_copies(images: torch.Tensor, delta: int, offsets: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' glass-blur "pixel swaps", batched: for each pass of ``offsets`` (passes, 2, N, H, W),
    every pixel at least ``delta + 1`` from the top and left and ``delta`` from the bottom and right edges, bottom
    row first and right to left, takes the value of the pixel at its offset (dy, dx) in [-delta, delta). The
    reference writes ``x[a], x[b] = x[b], x[a]`` on numpy views, which copies b into a rather than swapping; this
    does what it does."""
    n, c, h, w = images.shape
    pixels = images.flatten(2).clone()  # (N, C, H * W)
    schedule = [(r.to(images.device), q.to(images.device)) for r, q in _copy_schedule(h, w, delta)]
    for dy, dx in offsets.to(images.device):
        for rows, cols in schedule:
            source = (rows + dy[:, rows, cols]) * w + cols + dx[:, rows, cols]  # (N, k)
            pixels[:, :, rows * w + cols] = pixels.gather(2, source[:, None, :].expand(n, c, -1))
    return pixels.view(n, c, h, w)


@CORRUPTIONS.register("glass_blur", category="blur")
def glass_blur(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Frosted glass: Gaussian blur, local pixel shuffling (:func:`local_copies`), Gaussian blur again; (σ, largest offset, passes) from
    imagecorruptions, which also rounds down to grey levels before the swaps."""
    sigma, delta, iterations = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))[severity - 1]
    n, _, h, w = images.shape
    offsets = torch.randint(-delta, delta, (iterations, 2, n, h, w), generator=generator, device=generator.device,
                            dtype=torch.int8)  # fmt: skip
    levels = (gaussian_blur(images, sigma) * 255).floor() / 255
    return gaussian_blur(local_copies(levels, delta, offsets), sigma).clamp(0, 1)


@CORRUPTIONS.register("motion_blur", category="blur")
def motion_blur(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """A moving camera: :func:`motion_blur_at` along a uniform angle in [-45°, 45°) per image; (radius, σ) from
    imagecorruptions."""
    radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[severity - 1]
    angles = _uniform(generator, images, (images.shape[0],), -45, 45)
    return motion_blur_at(images, radius, sigma, angles).clamp(0, 1)


ZOOM_FACTORS = ((1.0, 1.11, 0.01), (1.0, 1.16, 0.01), (1.0, 1.21, 0.02), (1.0, 1.26, 0.02), (1.0, 1.31, 0.03))
"""imagecorruptions' zoom factors per severity, as numpy ``arange(start, stop, step)`` arguments."""


def numpy_arange(start: float, stop: float, step: float) -> list[float]:
    """numpy's ``arange`` to the last bit (it steps by ``(start + step) - start``, not ``step``), so that crops
    such as ``ceil(32 / 1.28)`` land where the reference's do."""
    delta = (start + step) - start
    return [start + i * delta for i in range(math.ceil((stop - start) / step))]


@CORRUPTIONS.register("zoom_blur", category="blur")
def zoom_blur(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """A camera zooming in during the exposure: the mean of the image and its :func:`clipped_zoom` at each of
    imagecorruptions' factors."""
    h, w = images.shape[-2:]
    factors = numpy_arange(*ZOOM_FACTORS[severity - 1])
    total = images.clone()
    for factor in factors:
        total += clipped_zoom(images, factor)[..., :h, :w]
    return (total / (len(factors) + 1)).clamp(0, 1)


# ---------------------------------------------------------------------------------------------------------------
# Weather


@CORRUPTIONS.register("snow", category="weather", colour=True)
def snow(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Falling snow: Gaussian noise zoomed into flakes, thresholded, motion-blurred along an angle in
    [-135°, -45°), added twice (the second copy turned 180°) to the image, itself blended towards a brightened
    grey; (mean, std, zoom, threshold, blur radius, blur σ, blend) from imagecorruptions."""
    mean, std, zoom, threshold, radius, sigma, blend = (
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    )[severity - 1]
    n, _, h, w = images.shape
    noise = torch.randn((n, 1, h, w), generator=generator, device=generator.device, dtype=images.dtype)
    flakes = clipped_zoom(mean + std * noise.to(images.device), zoom)
    flakes = torch.where(flakes < threshold, 0, flakes).clamp(0, 1)
    flakes = motion_blur_at(flakes, radius, sigma, _uniform(generator, images, (n,), -135, -45))
    flakes = ((flakes * 255).round() / 255)[..., :h, :w]
    brightened = torch.maximum(images, luma(images) * 1.5 + 0.5)
    return (blend * images + (1 - blend) * brightened + flakes + flakes.flip(-2, -1)).clamp(0, 1)


def frost_folder() -> Path:
    """The frost photographs shipped with imagecorruptions, found without importing it (it needs pkg_resources)."""
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the frost corruption needs the imagecorruptions package (pip install imagecorruptions)")
    return Path(spec.submodule_search_locations[0]) / "frost"


FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
"""The frost photographs imagecorruptions draws from (it lists a sixth but never draws it)."""


@functools.lru_cache(maxsize=8)
def frost_textures(h: int, w: int) -> tuple[torch.Tensor, ...]:
    """Each frost photograph (3, H', W') as uint8, scaled as imagecorruptions does for an h x w image: 1.1 times
    the factor (at least 1) that makes it cover the image, bicubic, rounded to grey levels."""
    from torchvision.io import ImageReadMode, decode_image

    textures = []
    for name in FROST_FILES:
        photo = decode_image(str(frost_folder() / name), mode=ImageReadMode.RGB)
        scale = 1.1 * max(1.0, h / photo.shape[1], w / photo.shape[2])
        size = (math.ceil(photo.shape[1] * scale), math.ceil(photo.shape[2] * scale))
        scaled = F.interpolate(photo[None].float(), size=size, mode="bicubic", align_corners=False)[0]
        textures.append(scaled.round().clamp(0, 255).to(torch.uint8))
    return tuple(textures)


@CORRUPTIONS.register("frost", category="weather", colour=True)
def frost(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Frost on a window: the image dimmed and a random crop of one of five frost photographs added; (image
    weight, frost weight) from imagecorruptions."""
    image_weight, frost_weight = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))[severity - 1]
    n, _, h, w = images.shape
    textures = frost_textures(h, w)
    chosen = torch.randint(len(textures), (n,), generator=generator, device=generator.device).cpu()
    where = _uniform(generator, images, (n, 2), 0, 1).cpu().double()
    crops = torch.empty_like(images)
    for index, texture in enumerate(textures):
        mine = (chosen == index).nonzero().flatten()
        if len(mine) == 0:
            continue
        # the reference draws each corner with randint(0, size - image size): the last offset is never drawn
        tops = (where[mine, 0] * (texture.shape[1] - h)).long()
        lefts = (where[mine, 1] * (texture.shape[2] - w)).long()
        rows = (tops[:, None] + torch.arange(h))[:, :, None]
        cols = (lefts[:, None] + torch.arange(w))[:, None, :]
        crops[mine.to(images.device)] = texture[:, rows, cols].transpose(0, 1).to(images) / 255
    return (image_weight * images + frost_weight * crops).clamp(0, 1)


def plasma_fractal(n: int, size: int, decay: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` diamond-square height maps (N, size, size) scaled to [0, 1] (``size`` a power of two), as
    imagecorruptions draws them: midpoints are a quarter of their neighbours' sum plus ``w * U(-w, w)``, with ``w``
    starting at 100 and divided by ``decay`` at each halving of the step."""
    heights = torch.zeros(n, size, size, dtype=torch.float64, device=generator.device)
    step, wibble = size, 100.0

    def wibbled(total: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(total.shape, generator=generator, device=generator.device, dtype=torch.float64)
        return total / 4 + wibble * (2 * noise - 1) * wibble

    while step >= 2:
        half = step // 2
        corners = heights[:, ::step, ::step]
        squares = corners + corners.roll(-1, 1)
        heights[:, half::step, half::step] = wibbled(squares + squares.roll(-1, 2))
        centres, corners = heights[:, half::step, half::step], heights[:, ::step, ::step]
        across = centres + centres.roll(1, 1) + corners + corners.roll(-1, 2)
        heights[:, ::step, half::step] = wibbled(across)
        down = centres + centres.roll(1, 2) + corners + corners.roll(-1, 1)
        heights[:, half::step, ::step] = wibbled(down)
        step, wibble = half, wibble / decay
    heights -= heights.amin((1, 2), keepdim=True)
    return heights / heights.amax((1, 2), keepdim=True)


@CORRUPTIONS.register("fog", category="weather")
def fog(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Fog: a plasma fractal of strength ``s`` added to every channel, then the image scaled by
    ``max / (max + s)``; (strength, fractal decay) from imagecorruptions."""
    strength, decay = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    n, c, h, w = images.shape
    size = 1 << (max(h, w, c) - 1).bit_length()  # the reference takes the next power of two of max(H, W, C)
    haze = plasma_fractal(n, size, decay, generator)[:, None, :h, :w].to(images)
    brightest = images.amax((1, 2, 3), keepdim=True)
    return ((images + strength * haze) * brightest / (brightest + strength)).clamp(0, 1)


@CORRUPTIONS.register("brightness", category="weather", colour=True)
def brightness(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Daylight: the HSV value raised by an amount from imagecorruptions (clipped at 1), hue and saturation kept,
    which scales each pixel's RGB by new value / old value (black becomes grey)."""
    amount = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    value = images.amax(1, keepdim=True)
    raised = (value + amount).clamp(max=1)
    return torch.where(value > 0, images * raised / value.clamp(min=1e-12), raised).clamp(0, 1)


# ---------------------------------------------------------------------------------------------------------------
# Digital


@CORRUPTIONS.register("contrast", category="digital")
def contrast(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Low contrast (poor lighting): each channel pulled towards its mean by a factor from imagecorruptions."""
    factor = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    means = images.mean((2, 3), keepdim=True)
    return ((images - means) * factor + means).clamp(0, 1)


@CORRUPTIONS.register("elastic_transform", category="digital")
def elastic_transform(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Elastic warping (as of stretched or wet images): a displacement field of uniform noise in ±H/200, smoothed by
    a Gaussian of σ = 1% of the image side (truncated at 3σ, mirrored border) and scaled by α from
    imagecorruptions, sampled bilinearly (:func:`displace`)."""
    alpha = 250 * (0.05, 0.065, 0.085, 0.1, 0.12)[severity - 1]
    n, _, h, w = images.shape
    largest = 0.005 * h  # the reference bounds both directions by the height
    field = _uniform(generator, images, (n, 2, h, w), -largest, largest)
    field = gaussian_blur(field, (0.01 * h, 0.01 * w), truncate=3, mode="symmetric") * alpha
    return displace(images, field[:, 0], field[:, 1]).clamp(0, 1)


def _box_weights(size: int, reduced: int) -> torch.Tensor:
    """PIL's BOX downscaling from ``size`` to ``reduced`` samples as a (reduced, size) matrix: each output averages
    the inputs whose centres fall in its window, with equal weights."""
    scale = size / reduced
    centres = (torch.arange(reduced, dtype=torch.float64)[:, None] + 0.5) * scale
    positions = (torch.arange(size, dtype=torch.float64)[None, :] + 0.5 - centres) / scale
    weights = ((positions > -0.5) & (positions <= 0.5)).double()
    return weights / weights.sum(1, keepdim=True)


@CORRUPTIONS.register("pixelate", category="digital")
def pixelate(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Upscaled low-resolution images: PIL's BOX downscaling by a factor from imagecorruptions, then nearest
    upscaling back."""
    factor = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]
    h, w = images.shape[-2:]
    rows = _box_weights(h, int(h * factor)).to(images)
    cols = _box_weights(w, int(w * factor)).to(images)
    small = rows @ images @ cols.T
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


@CORRUPTIONS.register("jpeg_compression", category="digital", colour=True)
def jpeg_compression(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Lossy compression artefacts: a JPEG round trip at a quality from imagecorruptions, through Pillow's libjpeg
    as there, one image at a time on the CPU (the codec is the cost, not the loop)."""
    quality = (25, 18, 15, 10, 7)[severity - 1]
    pixels = (images * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for image in pixels:
        buffer = io.BytesIO()
        PIL.Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        decoded.append(torch.from_numpy(np.array(PIL.Image.open(buffer).convert("RGB"))))
    return (torch.stack(decoded).permute(0, 3, 1, 2).to(images) / 255).clamp(0, 1)


def corruption_seed(seed: int, name: str, severity: int) -> int:
    """The seed of one corruption and severity: fixed by ``seed``, independent of which others are applied."""
    return zlib.crc32(f"{seed}:{name}:{severity}".encode())


def corrupted_in_rotation(data: ImageArrays, names: Sequence[str], severity: int, seed: int = 0) -> ImageArrays:
    """``data`` with image ``i`` corrupted by ``names[i % len(names)]`` at ``severity``: one set in which every
    corruption is represented, e.g. to ask whether an OOD detector tells corrupted images from clean ones."""
    images = data.images.float() / 255
    corrupted = data.images.clone()
    for k, name in enumerate(names):
        chosen = torch.arange(k, len(data), len(names))
        if len(chosen):
            generator = torch.Generator().manual_seed(corruption_seed(seed, name, severity))
            out = corrupt(images[chosen], name, severity, generator=generator)
            corrupted[chosen] = (out * 255).round().clamp(0, 255).to(torch.uint8)
    return replace(data, images=corrupted, source=f"{data.source}, corrupted at severity {severity}")
