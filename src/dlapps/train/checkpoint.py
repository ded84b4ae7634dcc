"""Training checkpoints as safetensors files: tensors in the body, everything else as JSON in the header."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from dlapps.errors import CheckpointError
from dlapps.models.weights import load_state_dict_checked, read_safetensors
from dlapps.report.io import finite, write_atomically

_META_KEY = "dlapps"


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "plain_state": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta["plain_state"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    info: dict[str, Any] | None = None,
) -> None:
    """Write model (and optimizer/scheduler) state plus ``info`` (epoch, config, history...) atomically; a
    failed write is one :class:`~dlapps.errors.OutputError` line, and the checkpoint before it is kept."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {"info": info or {}}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    metadata = {_META_KEY: json.dumps(finite(meta), allow_nan=False)}
    write_atomically(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata), "the checkpoint")


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote; return its ``info``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    tensors, header = read_safetensors(path)
    if _META_KEY not in header:
        raise CheckpointError(f"{path} is a safetensors file but not a dlapps checkpoint (no '{_META_KEY}' header)")
    try:
        meta = json.loads(header[_META_KEY])
        meta["info"]  # noqa: B018 - what every dlapps checkpoint has
    except (ValueError, TypeError, KeyError):
        raise CheckpointError(
            f"{path} has a damaged dlapps header; delete the file (it is rebuilt on a rerun)"
        ) from None
    model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    load_state_dict_checked(model, model_state, source=str(path))
    if optimizer is not None:
        if "optimizer" not in meta:
            raise CheckpointError(f"{path} holds no optimizer state to resume from")
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
        optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, meta["optimizer"]))
    if scheduler is not None and "scheduler" in meta:
        scheduler.load_state_dict(meta["scheduler"])
    return meta["info"]
