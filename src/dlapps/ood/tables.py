"""OOD tables in Markdown, from the metric records of :func:`dlapps.ood.ood_metrics` and their
:func:`dlapps.ood.summarize_detectors` rows (records carry ``model``, ``detector``, ``ood_set`` and ``distance``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dlapps.ood.base import DETECTORS
from dlapps.ood.metrics import DISTANCES, METRICS
from dlapps.report.markdown import bold_best, percent, table

Records = Sequence[dict[str, Any]]


def find_record(records: Records, **keys: str) -> dict[str, Any] | None:
    return next((r for r in records if all(r[k] == v for k, v in keys.items())), None)


def _cell(record: dict[str, Any], metric: str) -> str:
    """A metric in %, with AUROC's 95% interval where the record has one."""
    interval = record.get(f"{metric}_ci")
    return percent(record[metric]) + (f" ({percent(interval[0])}–{percent(interval[1])})" if interval else "")


def detector_table(
    records: Records, summary: Records, distances: Mapping[str, str], model: str, metric: str, detectors: Sequence[str]
) -> str:
    """Detectors x OOD sets (``distances``: set -> near/far/user) for one model and metric, in %, with their 95%
    intervals where the records have them, group means and, for AUROC, whether each detector beats MSP; the best of
    each column in bold."""
    groups = [g for g in DISTANCES if g in distances.values()]
    averaged = [g for g in groups if list(distances.values()).count(g) > 1]  # a mean of one set repeats its column
    columns = [[_cell(find_record(records, model=model, detector=d, ood_set=s), metric) for d in detectors]
               for s in distances]  # fmt: skip
    columns += [[percent(find_record(summary, model=model, detector=d)[f"{g}_{metric}"]) for d in detectors]
                for g in averaged]  # fmt: skip
    columns = [bold_best(column, metric != "fpr95") for column in columns]
    headers = ["detector", *distances, *(f"mean {g}-OOD" for g in averaged)]
    rows = [[DETECTORS[d].name, *(column[i] for column in columns)] for i, d in enumerate(detectors)]
    if "msp" in detectors and metric == "auroc":
        headers.append(f"beats MSP ({' / '.join(groups)})")
        for row, detector in zip(rows, detectors, strict=True):
            marks = [find_record(summary, model=model, detector=detector)[f"beats_msp_{g}"] for g in groups]
            row.append(" / ".join("—" if m is None else "yes" if m else "no" for m in marks))
    return table(headers, rows)


def metrics_table(records: Records, labels: Mapping[str, str], accuracy: Mapping[str, float]) -> str:
    """Every record as a row: model (by its label), its ID accuracy, detector, OOD set and the four metrics (%)."""
    rows = [[labels[r["model"]], percent(accuracy[r["model"]]), DETECTORS[r["detector"]].name, r["ood_set"],
             *(percent(r[m]) for m in METRICS)] for r in records]  # fmt: skip
    headers = ["model", "ID acc. %", "detector", "OOD set", "AUROC %", "AUPR-In %", "AUPR-Out %", "FPR@95TPR %"]
    return table(headers, rows)


def beats_msp_lines(summary: Records, labels: Mapping[str, str]) -> str:
    """A bullet per model: the detectors whose mean AUROC beats MSP's, near- and far-OOD."""
    lines = []
    for model, label in labels.items():
        parts = []
        for group in DISTANCES:
            rows = [r for r in summary if r["model"] == model and r[f"beats_msp_{group}"] is not None]
            if rows:
                winners = [DETECTORS[r["detector"]].name for r in rows if r[f"beats_msp_{group}"]]
                parts.append(f"{group}-OOD: {', '.join(winners) or 'none'}")
        if parts:
            lines.append(f"- **{label}** — {'; '.join(parts)}.")
    return "\n".join(lines)


def against_msp_lines(records: Records, model: str) -> str:
    """A bullet per detector: the OOD sets where its AUROC is above or below MSP's beyond noise (the 95% interval of
    the paired difference excludes 0), from records with ``auroc_minus_msp_ci``."""
    lines = []
    for detector in dict.fromkeys(r["detector"] for r in records if r["model"] == model):
        mine = [r for r in records if (r["model"], r["detector"]) == (model, detector) and r.get("auroc_minus_msp_ci")]
        if not mine:
            continue
        above = [r["ood_set"] for r in mine if r["auroc_minus_msp_ci"][0] > 0]
        below = [r["ood_set"] for r in mine if r["auroc_minus_msp_ci"][1] < 0]
        noise = [r["ood_set"] for r in mine if r["ood_set"] not in above + below]
        parts = [f"{label} {', '.join(sets)}" for label, sets in
                 (("above MSP on", above), ("below on", below), ("within noise on", noise)) if sets]  # fmt: skip
        lines.append(f"- **{DETECTORS[detector].name}**: {'; '.join(parts)}.")
    return "\n".join(lines)
