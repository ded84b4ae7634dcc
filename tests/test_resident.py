import pytest
import torch

from dlapps.data import ImageArrays, ResidentLoader, Transform
from dlapps.data.augment import normalize, random_crop, random_hflip


def _indexed(n: int = 50, size: int = 6) -> ImageArrays:
    """Image i is filled with value i (mod 256) and labelled i, so batches reveal which samples they hold."""
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, size, size).contiguous()
    return ImageArrays(images, torch.arange(n), tuple(str(i) for i in range(n)), "test")


def _epoch_labels(loader: ResidentLoader, epoch: int) -> torch.Tensor:
    loader.set_epoch(epoch)
    return torch.cat([labels for _, labels in loader])


def test_each_epoch_is_a_seeded_permutation():
    loader = ResidentLoader(_indexed(), batch_size=8, shuffle=True, seed=3)
    first = _epoch_labels(loader, 0)
    assert sorted(first.tolist()) == list(range(50)) and len(loader) == 7
    assert torch.equal(first, _epoch_labels(ResidentLoader(_indexed(), batch_size=8, shuffle=True, seed=3), 0))
    assert not torch.equal(first, _epoch_labels(loader, 1))
    assert not torch.equal(first, _epoch_labels(ResidentLoader(_indexed(), batch_size=8, shuffle=True, seed=4), 0))
    assert torch.equal(_epoch_labels(ResidentLoader(_indexed(), batch_size=8), 5), torch.arange(50))


def test_batches_hold_the_right_images_and_drop_last():
    loader = ResidentLoader(_indexed(), batch_size=8, shuffle=True, drop_last=True)
    assert len(loader) == 6
    for inputs, labels in loader:
        assert inputs.shape == (8, 3, 6, 6) and inputs.dtype == torch.float32
        assert torch.allclose(inputs[:, 0, 0, 0] * 255, labels.float())


def test_normalisation():
    data = _indexed()
    loader = ResidentLoader(data, batch_size=50, transform=Transform(mean=(0.5,) * 3, std=(0.25,) * 3))
    inputs, _ = next(iter(loader))
    assert torch.allclose(inputs, (data.images.float() / 255 - 0.5) / 0.25)
    assert torch.allclose(normalize(data.images, (0.0,), (1.0,)), data.images.float() / 255)


def test_random_crop_is_a_shift_with_zero_padding():
    images = torch.randint(1, 256, (40, 3, 8, 8), dtype=torch.uint8)
    cropped = random_crop(images, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    offsets = set()
    for i in range(len(images)):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(cropped[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert matches, f"image {i} is not a crop of its padded self"
        offsets.add(matches[0])
    assert len(offsets) > 10  # offsets really vary per image
    assert torch.equal(random_crop(images, 0, torch.Generator()), images)


def test_random_hflip_flips_about_half():
    images = torch.randint(0, 256, (400, 1, 4, 4), dtype=torch.uint8)
    out = random_hflip(images, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images, strict=True)])
    assert bool((flipped | kept).all()) and 150 < int(flipped.sum()) < 250


def test_augmented_loader_is_reproducible_per_epoch():
    data = ImageArrays(
        torch.randint(0, 256, (30, 3, 8, 8), dtype=torch.uint8), torch.zeros(30, dtype=torch.long), ("a",), "t"
    )
    make = lambda: ResidentLoader(data, batch_size=10, shuffle=True, transform=Transform(2, hflip=True), seed=1)  # noqa: E731
    a, b = make(), make()
    a.set_epoch(2), b.set_epoch(2)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b, strict=True))


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        ResidentLoader(_indexed(), batch_size=0)
    empty = ImageArrays(torch.zeros(0, 1, 2, 2, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), ("a",), "t")
    with pytest.raises(ValueError, match="empty"):
        ResidentLoader(empty, batch_size=4)
