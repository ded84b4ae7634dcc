"""What an attack achieved, from an :class:`AttackResult`. Each metric is a float; NaN where undefined.

Success is measured on the *attacked* samples (:attr:`AttackResult.attacked`): those the model classified
correctly before the attack and that were not skipped, so a sample the model already got wrong is never
counted as a success of the attack.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dlapps.attacks.base import AttackResult


def _mean(values: torch.Tensor) -> float:
    return values.float().mean().item() if values.numel() else math.nan


def clean_accuracy(result: AttackResult) -> float:
    """Fraction of all samples the model classifies correctly before the attack."""
    return _mean(result.pred_before == result.labels)


def robust_accuracy(result: AttackResult) -> float:
    """Fraction of all samples still classified correctly after the attack (skipped ones as they are).

    Samples misclassified before the attack count as errors: this is the accuracy an attacker leaves.
    """
    return _mean(result.pred_after == result.labels)


def success_rate(result: AttackResult) -> float:
    """Fraction of the attacked samples whose adversarial example meets the goal."""
    return _mean(result.success[result.attacked])


def mean_iterations(result: AttackResult) -> float:
    """Mean number of gradient steps to success, over the attacked samples the attack succeeded on."""
    return _mean(result.iterations[result.attacked & result.success])


def mean_confidence_drop(result: AttackResult) -> float:
    """Mean over the attacked samples of the true-class probability before minus after the attack."""
    return _mean((result.prob_before - result.prob_after)[result.attacked])


def cumulative_success(result: AttackResult, steps: int) -> list[float]:
    """For k = 0..steps: the fraction of attacked samples that met the goal within k steps (empty if none)."""
    attacked = result.attacked
    done = result.iterations[attacked & result.success]
    total = int(attacked.sum())
    return [int((done <= k).sum()) / total for k in range(steps + 1)] if total else []


def summarize(result: AttackResult) -> dict[str, Any]:
    """Counts and every metric above, JSON-ready (an undefined metric is None)."""
    attacked = result.attacked
    metrics = {
        "clean_accuracy": clean_accuracy(result),
        "robust_accuracy": robust_accuracy(result),
        "success_rate": success_rate(result),
        "mean_iterations": mean_iterations(result),
        "mean_confidence_drop": mean_confidence_drop(result),
    }
    return {
        "samples": len(result),
        "attacked": int(attacked.sum()),
        "skipped": int(result.skipped.sum()),
        "successes": int((result.success & attacked).sum()),
        **{name: None if math.isnan(value) else value for name, value in metrics.items()},
    }


def showcase(result: AttackResult, count: int) -> torch.Tensor:
    """``count`` indices of attacked samples to show: successes of distinct classes first, then other successes,
    then failures."""
    attacked = result.attacked.nonzero().flatten().tolist()
    succeeded = [i for i in attacked if result.success[i]]
    distinct: dict[int, int] = {}  # class -> first successful sample of that class
    for i in succeeded:
        distinct.setdefault(int(result.labels[i]), i)
    first = list(distinct.values())
    order = first + [i for i in succeeded if i not in first] + [i for i in attacked if i not in succeeded]
    return torch.tensor(order[:count], dtype=torch.int64)


def half_fooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ε (grey levels) at which half of the correctly classified images are fooled: interpolated in log ε
    between the sweep's points (``relation`` "≈"), or bounded by the sweep ("≤" its smallest ε already fools half,
    ">" its largest does not)."""
    points = [(r["eps_255"], r["fooled"]) for r in rows if r["eps_255"] > 0]
    if points and points[0][1] >= 0.5:
        return {"eps": points[0][0], "relation": "≤"}
    for (e0, f0), (e1, f1) in zip(points, points[1:], strict=False):
        if f0 < 0.5 <= f1:
            t = (0.5 - f0) / (f1 - f0)
            return {"eps": math.exp(math.log(e0) + t * (math.log(e1) - math.log(e0))), "relation": "≈"}
    return {"eps": points[-1][0] if points else None, "relation": ">"}
