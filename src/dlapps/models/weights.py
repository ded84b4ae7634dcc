"""Reading model weights from files, safely, with errors that say what does not fit.

Nothing here unpickles: weights are safetensors, or torch checkpoints read with
``torch.load(weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from dlapps.errors import CheckpointError


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a torch checkpoint (``weights_only``; ``state_dict`` unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} holds Python objects besides tensors, which dlapps does not load: unpickling a file can run "
            "any code it contains; save its state dict as safetensors instead"
        ) from None
    except (RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({exc})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return loaded


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(strict=True)`` with an error that names the first mismatching keys."""
    expected = model.state_dict()
    # BatchNorm counters only matter for momentum=None; checkpoints from old PyTorch versions lack them.
    state = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **state}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:3])}")
    if shapes:
        problems.append(f"shape {', '.join(shapes[:3])}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(state)


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict without the ``module.`` prefix that (Distributed)DataParallel training leaves on every key."""
    if state and all(key.startswith("module.") for key in state):
        return {key.removeprefix("module."): value for key, value in state.items()}
    return state


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a weights file into ``model`` (a ``module.`` prefix from DataParallel training is removed)."""
    load_state_dict_checked(model, strip_module_prefix(read_weights(path)), source=str(path))
    return model
