"""OOD figures: score histograms (ID vs each OOD set) and ROC / precision-recall curves.

Inputs are plain score tensors keyed by name, so any study or notebook can draw them; each function returns
a matplotlib Figure for :func:`dlapps.report.io.save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dlapps.ood.metrics import auroc, pr_in_points, roc_points
from dlapps.ood.scoring import DetectorEvaluation
from dlapps.report.figures import subplots

ID_COLOR, OOD_COLOR = "tab:blue", "tab:orange"
CLIP = (0.5, 99.5)  # histogram range: these percentiles of the pooled scores, so outliers don't squash the rest


def _numpy(scores: torch.Tensor) -> np.ndarray:
    return scores.detach().cpu().double().numpy()


def _histogram(axis: Axes, id_scores: torch.Tensor, ood_scores: torch.Tensor, ood_label: str) -> None:
    a, b = _numpy(id_scores), _numpy(ood_scores)
    low, high = np.percentile(np.concatenate([a, b]), CLIP)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 41)
    for values, color, label in ((a, ID_COLOR, "ID"), (b, OOD_COLOR, ood_label)):
        axis.hist(  # one filled outline, not a patch per bar: drawing 40 bars per histogram made grids take seconds
            np.clip(values, low, high), bins=bins, density=True, histtype="stepfilled", alpha=0.55, color=color,
            label=label,
        )  # fmt: skip
    axis.set_yticks([])
    axis.xaxis.set_major_locator(MaxNLocator(4))
    axis.text(
        0.02,
        0.95,
        f"AUROC {auroc(id_scores, ood_scores):.3f}",
        transform=axis.transAxes,
        va="top",
        fontsize=7,
        bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1},
    )


def histogram_grid(
    id_scores: Mapping[str, torch.Tensor],
    ood_scores: Mapping[str, Mapping[str, torch.Tensor]],
    *,
    title: str,
    id_label: str = "ID",
) -> Figure:
    """Rows: detectors (keys of ``id_scores``); columns: OOD sets (``ood_scores[set][detector]``)."""
    detectors, sets = list(id_scores), list(ood_scores)
    figure, axes = subplots(len(detectors), len(sets), figsize=(2.6 * len(sets), 1.7 * len(detectors)), squeeze=False)
    for row, detector in enumerate(detectors):
        for col, name in enumerate(sets):
            axis = axes[row, col]
            _histogram(axis, id_scores[detector], ood_scores[name][detector], name)
            axis.tick_params(labelsize=6)
            if row == 0:
                axis.set_title(f"ID vs {name}", fontsize=9)
            if col == 0:
                axis.set_ylabel(detector, fontsize=9)
    handles, _ = axes[0, 0].get_legend_handles_labels()
    top = 1 - 0.9 / figure.get_figheight()  # room for the title and legend, in figure coordinates
    figure.legend(
        handles, [id_label, "OOD set of the column"], loc="lower center", ncol=2, fontsize=8, bbox_to_anchor=(0.5, top)
    )
    figure.suptitle(
        f"{title}: score histograms (higher = more in-distribution; x clipped to the pooled "
        f"{CLIP[0]}–{CLIP[1]}th percentiles)",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, top))
    return figure


def _curves(axis: Axes, kind: str, pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """ROC (``kind="roc"``, AUROC in the label) or PR-In curves, one line per ``label -> (id, ood)``."""
    for label, (id_s, ood_s) in pairs.items():
        if kind == "roc":
            x, y = roc_points(id_s, ood_s)
            label = f"{label} ({auroc(id_s, ood_s):.3f})"
        else:
            x, y = pr_in_points(id_s, ood_s)
        axis.plot(x, y, label=label, linewidth=1.2)
    if kind == "roc":
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
        axis.set_xlabel("FPR (OOD kept)", fontsize=8)
        axis.set_ylabel("TPR (ID kept)", fontsize=8)
    else:
        axis.set_xlabel("recall (ID kept)", fontsize=8)
        axis.set_ylabel("precision (ID)", fontsize=8)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.grid(alpha=0.3)
    axis.tick_params(labelsize=7)


def roc_pr_grid(pairs: Mapping[str, Mapping[str, tuple[torch.Tensor, torch.Tensor]]], *, title: str) -> Figure:
    """Columns: OOD sets; rows: ROC and PR-In curves, one line per detector (``pairs[set][detector]``)."""
    sets = list(pairs)
    figure, axes = subplots(2, len(sets), figsize=(3.3 * len(sets), 6.6), squeeze=False)
    for col, name in enumerate(sets):
        _curves(axes[0, col], "roc", pairs[name])
        _curves(axes[1, col], "pr", pairs[name])
        axes[0, col].set_title(f"ID vs {name}", fontsize=9)
        axes[0, col].legend(fontsize=6, loc="lower right", title="AUROC", title_fontsize=6)
    figure.suptitle(f"{title}: ROC (top) and precision-recall with ID positive (bottom)", fontsize=10)
    figure.tight_layout()
    return figure


def overview(
    models: Mapping[str, tuple[torch.Tensor, Mapping[str, torch.Tensor]]], *, detector: str, near: str
) -> Figure:
    """The seed's 3 x 2 table for one detector: per model (column), the histogram ID vs ``near``, then
    ROC and PR-In curves against every OOD set. ``models[label] = (id_scores, {set: ood_scores})``."""
    figure, axes = subplots(3, len(models), figsize=(4.6 * len(models), 10), squeeze=False)
    for col, (label, (id_s, ood)) in enumerate(models.items()):
        _histogram(axes[0, col], id_s, ood[near], near)
        axes[0, col].legend(fontsize=7, loc="upper center")
        axes[0, col].set_title(f"{label}:\n{detector} score, ID vs {near}", fontsize=9)
        curves = {name: (id_s, scores) for name, scores in ood.items()}
        _curves(axes[1, col], "roc", curves)
        axes[1, col].legend(fontsize=7, loc="lower right", title="OOD set (AUROC)", title_fontsize=7)
        _curves(axes[2, col], "pr", curves)
        axes[2, col].legend(fontsize=7, loc="lower left", title="OOD set", title_fontsize=7)
    figure.tight_layout()
    return figure


def detector_figures(
    evaluation: DetectorEvaluation, names: Mapping[str, str], *, title: str, id_label: str
) -> tuple[Figure, Figure]:
    """The score histograms and the ROC / PR curves of each detector of ``evaluation`` against each OOD set;
    ``names``: detector -> how figures name it, in the order they are drawn."""
    ids, oods = evaluation.id_scores, evaluation.ood_scores
    histograms = histogram_grid({names[d]: ids[d] for d in names},
                                {s: {names[d]: v[d] for d in names} for s, v in oods.items()},
                                title=title, id_label=id_label)  # fmt: skip
    curves = roc_pr_grid({s: {names[d]: (ids[d], v[d]) for d in names} for s, v in oods.items()}, title=title)
    return histograms, curves
