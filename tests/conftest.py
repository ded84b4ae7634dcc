"""Shared fixtures. Tests that need real data read ``$DLAPPS_DATA`` in place.

Without ``DLAPPS_DATA`` such tests skip on a developer machine, but fail under CI (``CI`` set), so a CI run
can never pass by silently skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dlapps.data import ImageArrays, load_arrays


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("DLAPPS_DATA")
    if not root:
        if os.environ.get("CI"):
            pytest.fail("DLAPPS_DATA must point at the shared data in CI")
        pytest.skip("DLAPPS_DATA is not set")
    path = Path(root)
    if not path.is_dir():
        pytest.fail(f"DLAPPS_DATA={root} is not a folder")
    return path


@pytest.fixture(scope="session")
def mnist_test(data_root: Path) -> ImageArrays:
    return load_arrays("mnist", "test", data_root)


@pytest.fixture(scope="session")
def mnist_train(data_root: Path) -> ImageArrays:
    return load_arrays("mnist", "train", data_root)


@pytest.fixture(autouse=True)
def _single_seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def cifar10_test(data_root: Path) -> ImageArrays:
    return load_arrays("cifar10", "test", data_root)


@pytest.fixture(scope="session")
def resnet20(data_root: Path) -> torch.nn.Module:
    """The shared pretrained CIFAR-10 ResNet-20 (91.73%), in eval mode, taking images in [0, 1]."""
    from dlapps.models import load_pretrained

    return load_pretrained("resnet20_cifar10", data_root)
