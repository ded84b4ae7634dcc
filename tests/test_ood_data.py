"""OOD sets through the data layer: CIFAR-100 without overlapping classes, MNIST as RGB, noise, archives."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dlapps.data import ImageArrays, load_arrays
from dlapps.data.ood import (
    CIFAR10_OVERLAP,
    OOD_SETS,
    OodRequest,
    choose_ood_sets,
    conform,
    convert_channels,
    load_ood_set,
    noise,
    resize_images,
    without_classes,
)
from dlapps.errors import DataError


@pytest.fixture(scope="module")
def cifar100_test(data_root):
    return load_arrays("cifar100", "test", data_root)


def test_cifar100_leaves_out_the_overlapping_classes(cifar100_test):
    near = without_classes(cifar100_test, CIFAR10_OVERLAP)
    assert len(near) == 10_000 - 100 * len(CIFAR10_OVERLAP) and near.image_shape == (3, 32, 32)
    left = {near.classes[i] for i in near.labels.unique().tolist()}
    assert not left & set(CIFAR10_OVERLAP) and {"fox", "train", "lion"} <= left
    assert "without bus, pickup_truck" in near.source
    assert without_classes(cifar100_test, ()) is cifar100_test
    with pytest.raises(DataError, match="cannot exclude 'pickup' from .*cifar100_test.npz: not among its classes"):
        without_classes(cifar100_test, ("pickup_truck", "pickup"))
    with pytest.raises(DataError, match="no images are left"):
        without_classes(cifar100_test, cifar100_test.classes)


def test_every_named_set_is_cifar_shaped_uint8(data_root):
    request = OodRequest(root=data_root, size=40, seed=3, id_dataset="cifar10", id_classes=CIFAR10_CLASSES)
    for name, spec in OOD_SETS.items():
        if spec.is_made_from("cifar10"):
            continue
        data = load_ood_set(name, request)
        assert len(data) == 40 and data.image_shape == (3, 32, 32) and data.images.dtype == torch.uint8, name
        assert spec.distance("cifar10") == ("near" if name == "cifar100" else "far")
        if name in ("fakedata", "gaussian", "uniform"):
            assert torch.equal(load_ood_set(name, request).images, data.images), name  # generated reproducibly
        if name == "mnist":
            assert torch.equal(data.images[:, 0], data.images[:, 2])  # grey repeated over RGB
        if name == "cifar100":
            assert "without bus, pickup_truck, streetcar, tractor, wolf" in data.source


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.mark.parametrize(
    ("id_dataset", "near", "left_out"),
    [("cifar10", ["cifar100"], ["cifar10"]), ("cifar100", ["cifar10"], ["cifar100"]), ("mnist", [], ["mnist"]),
     ("imagenette", [], [])],
)  # fmt: skip
def test_default_sets_follow_the_in_distribution_data(id_dataset, near, left_out):
    chosen, left = choose_ood_sets(id_dataset)
    assert [c.label for c in left] == left_out and all("in-distribution dataset itself" in c.reason for c in left)
    assert [c.label for c in chosen if c.distance == "near"] == near
    assert {c.label for c in chosen} | set(left_out) == set(OOD_SETS)
    assert all(c.reason for c in chosen)


def test_a_requested_set_that_is_the_id_data_is_refused_and_a_users_set_declares_its_distance(tmp_path):
    with pytest.raises(DataError, match="'cifar100' is the in-distribution dataset"):
        choose_ood_sets("cifar100", ("cifar100",))
    with pytest.raises(DataError, match="is the in-distribution dataset"):
        choose_ood_sets(str(tmp_path / "mine.npz"), (str(tmp_path / "." / "mine.npz:far"),))
    chosen, _ = choose_ood_sets("cifar10", ("mine.npz:near", "theirs.npz", "mnist:near"))
    assert [(c.name, c.distance) for c in chosen] == [("mine.npz", "near"), ("theirs.npz", "user"), ("mnist", "near")]
    assert chosen[0].label == "mine" and "not declared" in chosen[1].reason


def test_a_labelled_set_drops_the_classes_the_id_data_shares(data_root):
    # an ID dataset with a class named like a CIFAR-100 one ("Pickup-Truck") and one it does not know
    request = OodRequest(root=data_root, size=None, id_dataset="mine", id_classes=("Pickup-Truck", "zeppelin"))
    data = load_ood_set("cifar100", request)
    assert len(data) == 9_900 and "pickup_truck" not in {data.classes[i] for i in data.labels.unique().tolist()}
    for_cifar100 = load_ood_set("cifar10", replace(request, id_dataset="cifar100", id_classes=("apple", "bus")))
    assert len(for_cifar100) == 10_000  # CIFAR-10 shares no class with CIFAR-100 (as in OpenOOD)
    with pytest.raises(DataError, match="shares every class"):
        load_ood_set("cifar10", replace(request, id_classes=CIFAR10_CLASSES))


def test_noise():
    gaussian, uniform = noise("gaussian", 64, seed=1), noise("uniform", 64, seed=1)
    assert gaussian.images.shape == uniform.images.shape == (64, 3, 32, 32)
    assert abs(gaussian.images.float().mean().item() - 127.5) < 2
    assert uniform.images.min() == 0 and uniform.images.max() == 255
    assert not torch.equal(noise("uniform", 64, seed=2).images, uniform.images)
    with pytest.raises(DataError, match="at least one image"):
        noise("gaussian", 0)
    with pytest.raises(DataError, match="unknown noise kind"):
        noise("pink", 4)


def test_resize_and_channel_conversion_are_only_done_when_asked(mnist_test):
    grey = mnist_test.subset(8)
    with pytest.raises(DataError, match=r"images are \(1, 28, 28\) .* model takes \(3, 32, 32\); .*resize"):
        conform(grey, (3, 32, 32))
    rgb = conform(grey, (3, 32, 32), resize=True)
    assert rgb.image_shape == (3, 32, 32) and "resized to (3, 32, 32)" in rgb.source
    assert conform(rgb, (3, 32, 32)) is rgb
    white = torch.full((2, 3, 5, 5), 255, dtype=torch.uint8)
    assert torch.equal(resize_images(white, (9, 9)), torch.full((2, 3, 9, 9), 255, dtype=torch.uint8))
    assert convert_channels(white, 1).shape == (2, 1, 5, 5) and convert_channels(white, 1).max() == 255
    with pytest.raises(DataError, match="cannot convert 3-channel images to 2"):
        convert_channels(white, 2)


def _archive(path, images: np.ndarray) -> str:
    np.savez(path, images=images, labels=np.zeros(len(images), dtype=np.int64), classes=np.array(["mine"]))
    return str(path)


def test_user_archives_and_bad_names(tmp_path):
    small = _archive(tmp_path / "small.npz", np.zeros((5, 28, 28, 1), dtype=np.uint8))
    mine = load_ood_set(small)
    assert len(mine) == 5 and mine.image_shape == (1, 28, 28)
    with pytest.raises(DataError, match="is empty"):
        load_ood_set(_archive(tmp_path / "empty.npz", np.zeros((0, 32, 32, 3), dtype=np.uint8)))
    with pytest.raises(DataError, match="does not exist"):
        load_ood_set(str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="unknown OOD set .nosuchset.; known: cifar100, cifar10, mnist"):
        load_ood_set("nosuchset")
    empty = ImageArrays(torch.zeros(0, 3, 32, 32, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), (), "nothing")
    with pytest.raises(DataError, match="nothing: the set is empty"):
        conform(empty, (3, 32, 32))
