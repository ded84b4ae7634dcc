"""OOD metrics with one convention, computed with scikit-learn on the raw scores.

Convention: scores are "higher = more in-distribution" (the package's sign), and **in-distribution is the
positive class**. A threshold ``t`` keeps an image as ID when ``score >= t``; then

- TPR(t) = fraction of ID images kept, FPR(t) = fraction of OOD images kept;
- **AUROC**: area under FPR -> TPR = P(s_ID > s_OOD) + P(s_ID = s_OOD) / 2 (ties count half);
- **AUPR-In**: average precision with ID positive, ranked by score;
- **AUPR-Out**: average precision with OOD positive, ranked by ``-score``;
- **FPR@95%TPR**: FPR at the highest threshold that keeps at least 95% of ID images, i.e. the FPR of the
  first ROC point (all distinct thresholds, none dropped) with TPR >= 0.95 — no interpolation between
  points, so it is the error rate of a threshold one can actually set. Tied scores are kept or dropped together.

Scores go to scikit-learn unchanged (float64): an unbounded score (energy, distances) is never squashed
through a sigmoid or softmax, which would turn its largest values into ties.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")


def _labelled(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    """Labels (ID = 1) and scores as float64 arrays; errors for empty or non-finite input."""
    parts = []
    for what, scores in (("ID", id_scores), ("OOD", ood_scores)):
        array = (scores.detach().cpu() if isinstance(scores, torch.Tensor) else torch.as_tensor(scores)).double()
        array = array.numpy().reshape(-1)
        if array.size == 0:
            raise ValueError(f"no {what} scores: OOD metrics need at least one ID and one OOD score")
        if not np.isfinite(array).all():
            raise ValueError(f"{what} scores contain {int((~np.isfinite(array)).sum())} non-finite value(s)")
        parts.append(array)
    labels = np.concatenate([np.ones(len(parts[0])), np.zeros(len(parts[1]))])
    return labels, np.concatenate(parts)


def auroc(id_scores, ood_scores) -> float:
    labels, scores = _labelled(id_scores, ood_scores)
    return float(roc_auc_score(labels, scores))


def aupr_in(id_scores, ood_scores) -> float:
    labels, scores = _labelled(id_scores, ood_scores)
    return float(average_precision_score(labels, scores))


def aupr_out(id_scores, ood_scores) -> float:
    labels, scores = _labelled(id_scores, ood_scores)
    return float(average_precision_score(1 - labels, -scores))


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95) -> float:
    """FPR at the highest threshold keeping at least ``tpr`` of the ID images (see the module docstring)."""
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    labels, scores = _labelled(id_scores, ood_scores)
    fprs, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(fprs[np.searchsorted(tprs, tpr, side="left")])


def fpr_at_95_tpr(id_scores, ood_scores) -> float:
    return fpr_at_tpr(id_scores, ood_scores, 0.95)


def ood_metrics(id_scores, ood_scores) -> dict[str, float]:
    """All four metrics, keyed as in :data:`METRICS`."""
    return {
        "auroc": auroc(id_scores, ood_scores),
        "aupr_in": aupr_in(id_scores, ood_scores),
        "aupr_out": aupr_out(id_scores, ood_scores),
        "fpr95": fpr_at_95_tpr(id_scores, ood_scores),
    }


def roc_points(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the ROC curve, ID positive."""
    labels, scores = _labelled(id_scores, ood_scores)
    fprs, tprs, _ = roc_curve(labels, scores)
    return fprs, tprs


def pr_in_points(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of the precision-recall curve with ID positive (the AUPR-In curve)."""
    labels, scores = _labelled(id_scores, ood_scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return recall, precision


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


DISTANCES = ("near", "far", "user")


def summarize_detectors(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and detector: mean AUROC and FPR@95 over each group of OOD sets, and whether it beats MSP.

    ``records`` are :func:`ood_metrics` rows with ``model``, ``detector`` and ``distance`` keys (near, far, or user
    for a set whose distance nobody stated); a group without sets has None.
    """
    rows = []
    for model, detector in dict.fromkeys((r["model"], r["detector"]) for r in records):
        row: dict[str, Any] = {"model": model, "detector": detector}
        for group in DISTANCES:
            mine = [r for r in records if (r["model"], r["detector"], r["distance"]) == (model, detector, group)]
            row[f"{group}_auroc"] = _mean([r["auroc"] for r in mine])
            row[f"{group}_fpr95"] = _mean([r["fpr95"] for r in mine])
        rows.append(row)
    msp = {row["model"]: row for row in rows if row["detector"] == "msp"}
    for row in rows:
        for group in DISTANCES:
            base = msp.get(row["model"], {}).get(f"{group}_auroc")
            mine = row[f"{group}_auroc"]
            comparable = row["detector"] != "msp" and base is not None and mine is not None
            row[f"beats_msp_{group}"] = bool(mine > base) if comparable else None
    return rows
