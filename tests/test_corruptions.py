"""The 15 common corruptions against imagecorruptions (tests/corruption_reference.py), on real CIFAR-10 images.

Deterministic corruptions, and the deterministic parts of the random ones, match the reference pixel by pixel:
within 1 grey level (the reference truncates its float result to uint8; ours stays float) or 1e-5 for the
filters. Random corruptions match in distribution: per severity, the mean absolute change from the clean images
and the mean per-image PSNR within a few percent of the reference's (tolerances below) on 200 images.
benchmarks/corruption_agreement.py runs the issue's full acceptance check (500 images, accuracy of the shared
ResNet-20 within 2 points for every corruption and severity); ``test_resnet20_accuracy_agrees`` is its small
version.
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates
from skimage.filters import gaussian as skimage_gaussian
from torch import nn

from corruption_reference import reference, reference_corrupt
from dlapps.data import ImageArrays
from dlapps.data.corruptions import (
    CORRUPTIONS,
    FROST_FILES,
    SEVERITIES,
    clipped_zoom,
    corrupt,
    corruption_seed,
    displace,
    frost_folder,
    frost_textures,
    gaussian_blur,
    local_copies,
    luma,
    motion_blur_at,
)
from dlapps.errors import ConfigError, DataError
from dlapps.evaluate.corruption import (
    evaluate_corruptions,
    mean_corruption_accuracy,
    relative_corruption_error,
)

PAPER_ORDER = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")  # fmt: skip
DETERMINISTIC = ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression")
RANDOM = tuple(name for name in PAPER_ORDER if name not in DETERMINISTIC)
# imagecorruptions' own parameters make the mean change from clean fall between these severities (ours follows)
NOT_MONOTONE = {("glass_blur", 2), ("glass_blur", 4), ("frost", 4)}
GREY_LEVEL = 1 / 255
CHANGE_TOLERANCE = 0.04  # relative, mean absolute change from clean, 200 images
PSNR_TOLERANCE = 0.02  # relative, mean per-image PSNR, 200 images


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def cifar_pixels(cifar10_test: ImageArrays) -> torch.Tensor:
    """200 CIFAR-10 test images, uint8 (N, 3, 32, 32), a seeded random subset (the archive is sorted by class)."""
    return cifar10_test.subset(200, seed=1).images


@pytest.fixture(scope="module")
def reference_of(cifar_pixels):
    """imagecorruptions' output for ``cifar_pixels`` in [0, 1] by (name, severity), each computed once."""

    @functools.cache
    def reference_output(name: str, severity: int) -> torch.Tensor:
        return reference_corrupt(cifar_pixels, name, severity).float() / 255

    return reference_output


def change_and_psnr(corrupted: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    error = (corrupted.double() - clean.double()).flatten(1)
    return error.abs().mean().item(), (-10 * error.square().mean(1).log10()).mean().item()


def test_the_registry_holds_the_papers_15_in_its_order():
    assert CORRUPTIONS.names() == PAPER_ORDER
    categories = [CORRUPTIONS[name].category for name in PAPER_ORDER]
    assert categories == ["noise"] * 3 + ["blur"] * 4 + ["weather"] * 4 + ["digital"] * 4


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_deterministic_corruptions_match_pixel_by_pixel(cifar_pixels, reference_of, name, severity):
    ours = corrupt(cifar_pixels.float() / 255, name, severity, generator=_generator())
    theirs = reference_of(name, severity)
    assert (ours - theirs).abs().max() <= GREY_LEVEL * 1.01


@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_match_in_distribution(cifar_pixels, reference_of, name):
    clean = cifar_pixels.float() / 255
    for severity in range(1, 6):
        ours = change_and_psnr(corrupt(clean, name, severity, generator=_generator()), clean)
        theirs = change_and_psnr(reference_of(name, severity), clean)
        assert ours[0] == pytest.approx(theirs[0], rel=CHANGE_TOLERANCE), (severity, ours, theirs)
        assert ours[1] == pytest.approx(theirs[1], rel=PSNR_TOLERANCE), (severity, ours, theirs)


class _NumpyDraws:
    """torch as the corruptions module sees it, but with ``rand`` and ``randn`` drawn from numpy's global
    generator: for one image, the corruptions below then draw what imagecorruptions draws, in its order."""

    def __getattr__(self, name: str):
        return getattr(torch, name)

    def rand(self, shape, *, generator, device, dtype):
        return torch.from_numpy(np.random.random_sample(tuple(shape))).to(dtype)

    def randn(self, shape, *, generator, device, dtype):
        return torch.from_numpy(np.random.standard_normal(tuple(shape))).to(dtype)


@pytest.mark.parametrize("name", ["motion_blur", "snow", "fog", "elastic_transform"])
def test_random_corruptions_are_the_references_given_its_draws(cifar_pixels, name, monkeypatch):
    """Fed numpy's draws, a random corruption is imagecorruptions' to float precision: they differ only in the
    generator, hence agree in distribution."""
    from PIL import Image

    from dlapps.data import corruptions

    for index in range(4):
        for severity in range(1, 6):
            np.random.seed(index)
            monkeypatch.setattr(corruptions, "torch", _NumpyDraws())
            ours = corrupt(cifar_pixels[index : index + 1].double() / 255, name, severity, generator=_generator())
            monkeypatch.undo()
            np.random.seed(index)
            theirs = getattr(reference, name)(Image.fromarray(cifar_pixels[index].permute(1, 2, 0).numpy()), severity)
            assert np.abs(ours[0].permute(1, 2, 0).numpy() * 255 - theirs).max() < 1e-3, (index, severity)


def test_gaussian_blur_is_scikit_images():
    field = torch.rand(2, 3, 32, 40, dtype=torch.float64, generator=_generator())
    ours = gaussian_blur(field, 1.1)
    for image, blurred in zip(field, ours, strict=True):
        theirs = skimage_gaussian(image.permute(1, 2, 0).numpy(), sigma=1.1, channel_axis=-1)
        assert np.allclose(blurred.permute(1, 2, 0).numpy(), theirs, atol=1e-10)
    sigma = (0.32, 0.4)  # elastic's displacement smoothing: per-axis σ, truncated at 3σ, mirrored border
    ours = gaussian_blur(field, sigma, truncate=3, mode="symmetric")
    theirs = np.stack([skimage_gaussian(channel, sigma=sigma, mode="reflect", truncate=3) for channel in field[0]])
    assert np.allclose(ours[0].numpy(), theirs, atol=1e-10)


def test_motion_blur_is_the_references_at_each_angle(cifar_pixels):
    images = cifar_pixels[:4].double()
    angles = torch.tensor([-45.0, -12.5, 30.0, 44.0])
    ours = motion_blur_at(images, 15, 5, angles)
    for image, angle, blurred in zip(images, angles, ours, strict=True):
        theirs = reference._motion_blur(image.permute(1, 2, 0).numpy(), radius=15, sigma=5, angle=float(angle))
        assert np.allclose(blurred.permute(1, 2, 0).numpy(), theirs, atol=1e-3)  # theirs: float32, 0-255


def test_clipped_zoom_and_displace_are_scipys(cifar_pixels):
    images = cifar_pixels[:2].float() / 255
    for factor in (1.06, 1.28, 3.0):
        theirs = reference.clipped_zoom(images[0].permute(1, 2, 0).numpy(), factor)
        assert np.allclose(clipped_zoom(images, factor)[0].permute(1, 2, 0).numpy(), theirs, atol=1e-5)
    dx, dy = (torch.rand(2, 2, 32, 32, generator=_generator()) * 8 - 4).unbind(1)
    ours = displace(images, dx, dy)
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    for image, image_dx, image_dy, warped in zip(images, dx, dy, ours, strict=True):
        for channel, out in zip(image.numpy(), warped.numpy(), strict=True):
            theirs = map_coordinates(
                channel, [rows + image_dy.numpy(), cols + image_dx.numpy()], order=1, mode="reflect"
            )
            assert np.allclose(out, theirs, atol=1e-5)


def test_glass_blur_copies_pixels_in_the_references_order():
    """The batched schedule gives what the reference's pixel-by-pixel loop gives with the same offsets."""
    images = torch.rand(2, 3, 20, 23, generator=_generator())
    delta = 3
    offsets = torch.randint(-delta, delta, (2, 2, 2, 20, 23), generator=_generator(1))
    expected = images.clone()
    for dy, dx in offsets:
        for h in range(20 - delta, delta, -1):
            for w in range(23 - delta, delta, -1):
                expected[:, :, h, w] = expected[torch.arange(2), :, h + dy[:, h, w], w + dx[:, h, w]]
    assert torch.equal(local_copies(images, delta, offsets), expected)


def test_frost_textures_are_the_references_scaled_photographs():
    import cv2

    for name, texture in zip(FROST_FILES, frost_textures(32, 32), strict=True):
        photo = cv2.imread(str(frost_folder() / name))
        size = (math.ceil(photo.shape[1] * 1.1), math.ceil(photo.shape[0] * 1.1))
        theirs = cv2.resize(photo, dsize=size, interpolation=cv2.INTER_CUBIC)[..., ::-1]
        assert (texture.permute(1, 2, 0).int() - torch.from_numpy(theirs.copy()).int()).abs().max() <= 1


def test_frost_needs_neither_imagecorruptions_nor_pkg_resources_imported():
    code = ("import sys, torch; from dlapps.data.corruptions import corrupt; "
            "corrupt(torch.rand(2, 3, 32, 32), 'frost', 3, generator=torch.Generator()); "
            "print(sorted({'imagecorruptions', 'pkg_resources'} & set(sys.modules)))")  # fmt: skip
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_severity_is_monotone(cifar_pixels):
    clean = cifar_pixels.float() / 255
    for name in PAPER_ORDER:
        changes = [change_and_psnr(corrupt(clean, name, s, generator=_generator()), clean)[0] for s in range(1, 6)]
        for severity in range(2, 6):
            grows = changes[severity - 1] > changes[severity - 2]
            assert grows != ((name, severity) in NOT_MONOTONE), (name, changes)


def test_the_exceptions_to_monotony_are_the_references(cifar_pixels, reference_of):
    clean = cifar_pixels.float() / 255
    for name, severity in NOT_MONOTONE:
        changes = [change_and_psnr(reference_of(name, s), clean)[0] for s in (severity - 1, severity)]
        assert changes[1] < changes[0], (name, severity, changes)


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_a_seed_fixes_the_result_and_shape_dtype_device_are_kept(name):
    images = torch.rand(3, 3, 32, 32, dtype=torch.float64, generator=_generator())
    first = corrupt(images, name, 3, generator=_generator(5))
    assert first.shape == images.shape and first.dtype == images.dtype and first.device == images.device
    assert 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, corrupt(images, name, 3, generator=_generator(5)))
    if name in RANDOM:
        assert not torch.equal(first, corrupt(images, name, 3, generator=_generator(6)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", PAPER_ORDER)
def test_images_on_a_gpu_stay_there(name):
    images = torch.rand(3, 3, 32, 32, device="cuda")
    out = corrupt(images, name, 5, generator=torch.Generator(device="cuda").manual_seed(0))
    assert out.device == images.device and out.shape == images.shape


@pytest.fixture(scope="module")
def imagenette_pixels(data_root: Path) -> torch.Tensor:
    """Four 224-px Imagenette validation images, uint8 (4, 3, 224, 224)."""
    from torchvision.io import decode_jpeg, read_file

    files = sorted((data_root / "imagenette" / "val").glob("*/*.JPEG"))[::250]
    return torch.stack([decode_jpeg(read_file(str(path))) for path in files])


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_224_pixel_images(imagenette_pixels, name):
    """Every corruption at ImageNet size; the deterministic ones match the reference there too."""
    images = imagenette_pixels.float() / 255
    out = corrupt(images, name, 5, generator=_generator())
    assert out.shape == images.shape and (out - images).abs().mean() > 0.01
    if name in DETERMINISTIC:
        theirs = reference_corrupt(imagenette_pixels, name, 5).float() / 255
        assert (out - theirs).abs().max() <= GREY_LEVEL * 1.01


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_grey_images(cifar_pixels, name):
    """One channel in, one out, at MNIST's 28 px too; the deterministic ones match the luma of the reference's
    output for the grey image (which it corrupts as RGB)."""
    mnist_sized = corrupt(torch.rand(2, 1, 28, 28, generator=_generator()), name, 4, generator=_generator())
    assert mnist_sized.shape == (2, 1, 28, 28)
    grey = luma(cifar_pixels[:20].float()).round().to(torch.uint8)
    ours = corrupt(grey.float() / 255, name, 4, generator=_generator())
    assert ours.shape == grey.shape
    if name in DETERMINISTIC:
        theirs = luma(reference_corrupt(grey, name, 4).float() / 255)
        assert (ours - theirs).abs().max() <= 2 * GREY_LEVEL


@pytest.mark.parametrize("name", PAPER_ORDER)
@pytest.mark.parametrize("shape", [(2, 3, 32, 48), (2, 3, 40, 24), (2, 1, 20, 36)])
def test_non_square_images(name, shape):
    """Wide, tall and grey non-square images keep their shape, stay in [0, 1] and change."""
    images = torch.rand(shape, generator=_generator())
    for severity in (1, 5):
        out = corrupt(images, name, severity, generator=_generator())
        assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
        assert (out - images).abs().mean() > 1e-3


def test_an_unknown_corruption_severity_or_image_shape_is_one_clear_error():
    images = torch.rand(1, 3, 32, 32)
    with pytest.raises(ConfigError, match="unknown corruption 'gausian_noise'; did you mean gaussian_noise"):
        corrupt(images, "gausian_noise", 1, generator=_generator())
    for severity in (0, 6, 2.5, 3.0):
        with pytest.raises(ConfigError, match="severity must be an integer from 1 to 5"):
            corrupt(images, "fog", severity, generator=_generator())
    for wrong in (images.mul(255).to(torch.uint8), images[0], torch.rand(1, 4, 32, 32)):
        with pytest.raises(DataError, match="corruptions take float images"):
            corrupt(wrong, "fog", 1, generator=_generator())


class _MeanColour(nn.Module):
    """A fixed classifier of 10 classes from the images' mean colour (no data or training needed)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 10)
        torch.nn.init.normal_(self.head.weight, generator=_generator(3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(images.mean((2, 3)) * 10)


def test_evaluate_corruptions_batches_what_corrupting_everything_gives():
    model = _MeanColour().eval()
    pixels = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=_generator())
    data = ImageArrays(pixels, torch.randint(0, 10, (40,), generator=_generator()), tuple("abcdefghij"), "random")
    names, severities = ("gaussian_noise", "contrast"), (1, 5)
    evaluation = evaluate_corruptions(model, data, names, severities, seed=7, batch_size=40)
    assert set(evaluation.corrupted) == {(n, s) for n in names for s in severities}
    for name in names:
        for severity in severities:
            generator = _generator(corruption_seed(7, name, severity))
            logits = model(corrupt(pixels.float() / 255, name, severity, generator=generator))
            assert torch.equal(evaluation.corrupted[name, severity].predicted, logits.argmax(1))
            assert 0 <= evaluation.ece(name, severity) <= 1
    accuracies = [evaluation.accuracy(n, s) for n in names for s in severities]
    assert mean_corruption_accuracy(evaluation) == pytest.approx(sum(accuracies) / 4)
    assert relative_corruption_error(evaluation) == pytest.approx(evaluation.clean_accuracy - sum(accuracies) / 4)
    in_batches = evaluate_corruptions(model, data, names, severities, seed=7, batch_size=16)
    assert torch.equal(in_batches.corrupted["contrast", 5].confidence, evaluation.corrupted["contrast", 5].confidence)
    with pytest.raises(ConfigError, match="unknown corruption"):
        evaluate_corruptions(model, data, ["fogg"])


@pytest.mark.slow
def test_resnet20_accuracy_agrees(cifar10_test, resnet20):
    """The acceptance check, small: 200 images, seven corruptions, every severity (benchmarks/corruption_agreement.py
    runs all 15 on 500 images). A random corruption's accuracy varies from draw to draw: imagecorruptions differs
    from itself by up to 4 points on 500 images, so on 200 a pair may differ by up to 8 points and the mean over the
    five severities by up to 4."""
    data = cifar10_test.subset(200, seed=2)
    images = data.images.float() / 255
    for name in ("gaussian_noise", "glass_blur", "motion_blur", "snow", "fog", "elastic_transform", "jpeg_compression"):
        differences = []
        for severity in range(1, 6):
            ours = corrupt(images, name, severity, generator=_generator(corruption_seed(0, name, severity)))
            theirs = reference_corrupt(data.images, name, severity).float() / 255
            with torch.no_grad():
                accuracy = [(resnet20(x).argmax(1) == data.labels).double().mean().item() for x in (ours, theirs)]
            differences.append(accuracy[0] - accuracy[1])
        assert max(map(abs, differences)) <= 0.08, (name, differences)
        assert abs(sum(differences) / 5) <= 0.04, (name, differences)


def test_a_corruption_that_cannot_take_tiny_images_is_left_out_with_why():
    tiny = ImageArrays(torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8), torch.arange(6) % 2, ("a", "b"), "tiny")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2)).eval()
    found = evaluate_corruptions(model, tiny, ("defocus_blur", "glass_blur", "brightness"), seed=0)
    assert found.names == ("defocus_blur", "brightness")  # defocus mirrors its 8-pixel border again and again
    assert set(found.skipped) == {"glass_blur"} and "cannot corrupt (4, 4)-pixel images" in found.skipped["glass_blur"]
    assert mean_corruption_accuracy(found) == pytest.approx(
        sum(found.accuracy(n, s) for n in found.names for s in SEVERITIES) / 10
    )
