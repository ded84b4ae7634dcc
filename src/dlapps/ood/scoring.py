"""Fit and score many detectors over whole datasets, sharing one forward pass per batch between them.

Every detector that needs only logits and head features (all but ODIN and NAC) scores from the same forward
pass, run batched on the model's device under ``no_grad``; ODIN and NAC run their own passes, with gradients.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dlapps.errors import DlappsError, first_line
from dlapps.evaluate.bootstrap import batched_auroc, bootstrap_ci, paired_samples_difference_ci
from dlapps.models.hooks import find_head, model_device
from dlapps.ood.base import Detector, OutputDetector
from dlapps.ood.features import Batches, collect_outputs, head_outputs, iter_batches
from dlapps.ood.metrics import ood_metrics


@dataclass(frozen=True)
class Scored:
    """Scores per detector and the model's predictions, all on the CPU, in the data's order."""

    scores: dict[str, torch.Tensor]  # detector name -> (N,)
    predictions: torch.Tensor  # (N,) argmax of the logits
    labels: torch.Tensor  # (N,)

    def accuracy(self) -> float:
        return float((self.predictions == self.labels).double().mean())


UNUSABLE = (DlappsError, ValueError, RuntimeError)  # what a detector that cannot run on a model raises


def fit_detectors(
    detectors: Mapping[str, Detector],
    model: nn.Module,
    id_train_data: Batches | None,
    *,
    head: str | None = None,
    batch_size: int | None = None,
    skipped: dict[str, str] | None = None,
) -> dict[str, Detector]:
    """Fit every detector to ``model``; the ID statistics of output detectors come from one shared pass over
    ``id_train_data``, other detectors (NAC) make their own. Given ``skipped``, a detector that cannot be fitted
    to this model is left out, with why in one line, instead of stopping the rest. Returns the fitted ones."""
    try:
        head_name, _ = find_head(model, head)
        needs_data = any(d.needs_data and isinstance(d, OutputDetector) for d in detectors.values())
        outputs = None
        if needs_data and id_train_data is not None:
            outputs = collect_outputs(model, id_train_data, head_name, batch_size)
    except UNUSABLE as exc:
        if skipped is None:
            raise
        skipped.update(dict.fromkeys(detectors, first_line(exc)))
        return {}
    fitted = {}
    for name, detector in detectors.items():
        try:
            if isinstance(detector, OutputDetector) or not detector.needs_data:
                detector.fit_outputs(model, outputs, head=head_name)
            else:
                detector.fit(model, id_train_data, head=head_name, batch_size=batch_size)
        except UNUSABLE as exc:
            if skipped is None:
                raise
            skipped[name] = first_line(exc)
            continue
        fitted[name] = detector
    return fitted


def _common_binding(detectors: Mapping[str, Detector]) -> tuple[nn.Module, str]:
    if not detectors:
        raise ValueError("no detectors to score with")
    bindings = {name: d.bound() for name, d in detectors.items()}
    model, head = next(iter(bindings.values()))
    if any(m is not model or h != head for m, h in bindings.values()):
        raise ValueError("detectors scored together must be fitted to the same model and head")
    return model, head


@torch.no_grad()
def score_detectors(detectors: Mapping[str, Detector], data: Batches, *, batch_size: int | None = None) -> Scored:
    """Score all of ``data`` with every (fitted) detector, ``batch_size`` images at a time (None: as many as run
    fastest, :func:`~dlapps.models.layout.inference_batch`)."""
    model, head = _common_binding(detectors)
    scores: dict[str, list[torch.Tensor]] = {name: [] for name in detectors}
    predictions, labels = [], []
    for x, y in iter_batches(data, batch_size, model_device(model)):
        outputs = head_outputs(model, x, head)
        for name, detector in detectors.items():
            batch = detector.score_outputs(outputs) if isinstance(detector, OutputDetector) else detector.score(x)
            scores[name].append(batch.cpu())
        predictions.append(outputs.logits.argmax(dim=1).cpu())
        labels.append(y.cpu())
    if not labels:
        raise ValueError("no batches to score: the data is empty")
    return Scored(
        scores={name: torch.cat(parts) for name, parts in scores.items()},
        predictions=torch.cat(predictions),
        labels=torch.cat(labels),
    )


@dataclass(frozen=True)
class DetectorEvaluation:
    """Detectors fitted to one model and scored on its ID test images and on each OOD set."""

    id_scores: dict[str, torch.Tensor]  # detector -> (N,)
    ood_scores: dict[str, dict[str, torch.Tensor]]  # OOD set -> detector -> (M,)
    accuracy: float  # of the model on the ID test images (NaN when no detector could run)
    seconds: float  # fitting and scoring
    skipped: dict[str, str] = field(default_factory=dict)  # detector -> why it could not run on the model

    def records(
        self, distances: Mapping[str, str], model: str = "model", *, resamples: int = 0, seed: int = 0
    ) -> list[dict[str, Any]]:
        """One :func:`~dlapps.ood.metrics.ood_metrics` row per OOD set and detector, labelled with ``model`` and
        the set's distance (``near``, ``far`` or ``user``). With ``resamples``: AUROC's 95% bootstrap interval
        (``auroc_ci``) and that of its difference from MSP's on the same resampled images (``auroc_minus_msp_ci``;
        None for MSP, or without MSP)."""
        rows = []
        for name, scores in self.ood_scores.items():
            for detector in self.id_scores:
                row = {"model": model, "detector": detector, "ood_set": name, "distance": distances[name]}
                row |= ood_metrics(self.id_scores[detector], scores[detector])
                if resamples:
                    row |= self._intervals(name, detector, resamples, seed)
                rows.append(row)
        return rows

    def _intervals(self, ood_set: str, detector: str, resamples: int, seed: int) -> dict[str, list[float] | None]:
        """AUROC's bootstrap interval, and its paired difference from MSP's: ID and OOD images resampled apart,
        the same indices for both detectors."""
        ids, oods = self.id_scores, self.ood_scores[ood_set]
        options = {"resamples": resamples, "generator": torch.Generator().manual_seed(seed)}
        interval = bootstrap_ci(batched_auroc, ids[detector], oods[detector], **options)
        versus = None
        if detector != "msp" and "msp" in ids:
            found = paired_samples_difference_ci(batched_auroc, [ids[detector], oods[detector]],
                                                 [ids["msp"], oods["msp"]], **options)  # fmt: skip
            versus = [found.low, found.high]
        return {"auroc_ci": [interval.low, interval.high], "auroc_minus_msp_ci": versus}


def evaluate_detectors(
    detectors: Mapping[str, Detector],
    model: nn.Module,
    fit_data: Batches | None,
    id_data: Batches,
    ood_sets: Mapping[str, Batches],
    *,
    batch_size: int | None = None,
    skip_unusable: bool = False,
) -> DetectorEvaluation:
    """Fit ``detectors`` to ``model`` on ``fit_data`` (ID training images), then score ``id_data`` and every OOD
    set: what a study or an audit reports as OOD detection. With ``skip_unusable``, the detectors that cannot run on
    ``model`` (no linear head, too few fitting images, features of another shape...) are left out, each with why in
    one line (``skipped``), instead of stopping the rest: a detector that cannot be fitted is found from the shared
    pass, one that cannot score by scoring each alone, only when scoring them together fails."""
    started = time.perf_counter()
    skipped: dict[str, str] | None = {} if skip_unusable else None
    fitted = fit_detectors(detectors, model, fit_data, batch_size=batch_size, skipped=skipped)
    try:
        return _scored(fitted, id_data, ood_sets, batch_size, started, skipped or {})
    except UNUSABLE:
        if not skip_unusable or len(fitted) <= 1:
            raise
    found = []  # scoring failed together: each fitted detector on its own, to find which cannot score
    for name, detector in fitted.items():
        try:
            found.append(_scored({name: detector}, id_data, ood_sets, batch_size, started, {}))
        except UNUSABLE as exc:
            skipped[name] = first_line(exc)
    return DetectorEvaluation(
        {name: scores for e in found for name, scores in e.id_scores.items()},
        {set_name: {name: s for e in found for name, s in e.ood_scores[set_name].items()} for set_name in ood_sets},
        found[0].accuracy if found else float("nan"),
        time.perf_counter() - started,
        skipped,
    )


def _scored(
    detectors: Mapping[str, Detector], id_data: Batches, ood_sets: Mapping[str, Batches], batch_size: int | None,
    started: float, skipped: dict[str, str],
) -> DetectorEvaluation:  # fmt: skip
    if not detectors:
        return DetectorEvaluation({}, {name: {} for name in ood_sets}, float("nan"), 0.0, skipped)
    scored = score_detectors(detectors, id_data, batch_size=batch_size)
    ood_scores = {
        name: score_detectors(detectors, data, batch_size=batch_size).scores for name, data in ood_sets.items()
    }
    return DetectorEvaluation(scored.scores, ood_scores, scored.accuracy(), time.perf_counter() - started, skipped)
