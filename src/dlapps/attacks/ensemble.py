"""An ensemble of attacks, as AutoAttack runs it (Croce & Hein 2020): each attack on the images that every attack
before it left standing, so an image counts as robust only if it survives all of them, and each attack is
credited with the images it was first to break.

The standard chain is APGD-CE, APGD-T, then the score-based Square attack, which needs no gradient and so
breaks what gradient masking hides from the others (:data:`STANDARD_ENSEMBLE`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlapps.attacks.api import attack_arrays
from dlapps.attacks.attack import Attack, make_attack
from dlapps.attacks.base import PIXEL
from dlapps.attacks.metrics import cumulative_success, summarize
from dlapps.data import ImageArrays
from dlapps.evaluate import predict

STANDARD_ENSEMBLE = ("apgd-ce", "apgd-t", "square")

Memo = Callable[[str, dict[str, Any], Callable[[], dict[str, Any]]], dict[str, Any]]
"""``memo(name, settings, compute)``: the record ``compute()`` makes, or the one a cache kept for these settings; the
caller's cache, so an interrupted run resumes from the attacks it finished."""


def no_memo(name: str, settings: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return compute()


@dataclass(frozen=True)
class EnsembleResult:
    """Per-image outcome (on the CPU) of an ensemble, and one record per attack in the order they ran."""

    correct: torch.Tensor  # bool (N,): classified correctly when clean
    robust: torch.Tensor  # bool (N,): correct, and not broken by any attack
    stages: list[dict[str, Any]]  # attack, settings, attacked, broke, robust_accuracy after it, mean_iterations

    @property
    def clean_accuracy(self) -> float:
        return self.correct.double().mean().item()

    @property
    def robust_accuracy(self) -> float:
        return self.robust.double().mean().item()

    def record(self) -> dict[str, Any]:
        return {"images": len(self.correct), "clean_accuracy": self.clean_accuracy,
                "robust_accuracy": self.robust_accuracy, "stages": self.stages}  # fmt: skip


def run_ensemble(
    model: nn.Module,
    data: ImageArrays,
    attacks: Sequence[Attack],
    *,
    batch_size: int | None = None,
    seed: int = 0,
    memo: Memo = no_memo,
) -> EnsembleResult:
    """Run ``attacks`` in order on ``data``, each on the correctly classified images that no attack before it broke.

    Attack ``i`` draws its randomness from a generator seeded ``seed + i``; ``memo`` may keep each attack's record.
    """
    correct = predict(model, data, batch_size).argmax(1) == data.labels
    robust, stages = correct.clone(), []
    for i, each in enumerate(attacks):
        standing = robust.nonzero().flatten()

        def compute(standing: torch.Tensor = standing, each: Attack = each, i: int = i) -> dict[str, Any]:
            if not len(standing):
                return {"broken": [], "iterations": []}
            result = attack_arrays(model, data.take(standing), each, batch_size=batch_size,
                                   generator=torch.Generator().manual_seed(seed + i))  # fmt: skip
            return {
                "broken": standing[result.success].tolist(),
                "iterations": result.iterations[result.success].tolist(),
            }

        settings = {"attack": repr(each), "before": [repr(a) for a in attacks[:i]], "seed": seed + i}
        record = memo(each.name, settings, compute)
        robust[torch.tensor(record["broken"], dtype=torch.int64)] = False
        iterations = record["iterations"]
        stages.append({"attack": each.name, "settings": repr(each), "attacked": len(standing),
                       "broke": len(record["broken"]), "robust_accuracy": robust.double().mean().item(),
                       "mean_iterations": sum(iterations) / len(iterations) if iterations else None})  # fmt: skip
    return EnsembleResult(correct, robust, stages)


def robustness_at(
    model: nn.Module,
    data: ImageArrays,
    eps_255: float,
    ensemble: Sequence[Attack],
    *,
    pgd_steps: int,
    batch_size: int | None = None,
    seed: int = 0,
    memo: Memo = no_memo,
) -> tuple[dict[str, Any], EnsembleResult]:
    """L∞ PGD at ε = ``eps_255`` grey levels with per-sample early stop, and the ``ensemble`` (made for that ε) on the
    same images: PGD's summary and the fraction of correctly classified images it fooled within k steps, the
    ensemble's record, and ``robust_accuracy_all``: the images that survive PGD and every attack of the ensemble
    (their indices: ``robust_images``).
    ``fooled`` is the fraction of the correctly classified images that some attack broke."""

    def compute() -> dict[str, Any]:
        pgd = make_attack("pgd", eps=eps_255 * PIXEL, steps=pgd_steps)
        result = attack_arrays(model, data, pgd, batch_size=batch_size, generator=torch.Generator().manual_seed(seed))
        return {**summarize(result), "cumulative_success": cumulative_success(result, pgd_steps),
                "survivors": (result.pred_after == result.labels).nonzero().flatten().tolist()}  # fmt: skip

    pgd = memo("pgd", {"eps_255": eps_255, "steps": pgd_steps, "seed": seed}, compute)
    found = run_ensemble(model, data, ensemble, batch_size=batch_size, seed=seed + 1, memo=memo)
    survived_pgd = torch.zeros(len(data), dtype=torch.bool)
    survived_pgd[torch.tensor(pgd["survivors"], dtype=torch.int64)] = True
    survivors = found.robust & survived_pgd
    robust = survivors.double().mean().item()
    record = {"eps_255": eps_255, **{k: v for k, v in pgd.items() if k != "survivors"},
              "ensemble": found.record(), "robust_accuracy_all": robust,
              "fooled": 1 - robust / max(found.clean_accuracy, 1e-12),
              "robust_images": survivors.nonzero().flatten().tolist()}  # fmt: skip
    return record, found
