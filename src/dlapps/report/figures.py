"""Figures built from plain numbers (lists and dicts), so any study can reuse them.

Each function returns a matplotlib Figure; :func:`dlapps.report.io.save_figure` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator


def subplots(*grid: int, figsize: tuple[float, float], **kwargs) -> tuple[Figure, Axes | np.ndarray]:
    """A figure and its axes, like ``pyplot.subplots`` but without pyplot: nothing global is touched, so
    drawing a report neither needs nor changes a matplotlib backend."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*grid, **kwargs)


def mean_std_lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log2_x: bool = False,
    references: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Figure:
    """One line per series ``label -> (x, mean, std)`` with a ±std band.

    ``references`` maps a series label to published ``(x, y)`` values, drawn dotted in the series' colour.
    """
    figure, axis = subplots(figsize=(6.4, 4.2))
    colors = {}
    for label, (x, mean, std) in series.items():
        mean_a, std_a = np.asarray(mean), np.asarray(std)
        (line,) = axis.plot(x, mean_a, marker="o", label=label)
        colors[label] = line.get_color()
        axis.fill_between(x, mean_a - std_a, mean_a + std_a, color=line.get_color(), alpha=0.2)
    for label, (x, y) in (references or {}).items():
        axis.plot(
            x, y, linestyle=":", marker="x", color=colors.get(label, "grey"), alpha=0.8, label=f"{label}, write-up"
        )
    if log2_x:
        axis.set_xscale("log", base=2)
        ticks = sorted({v for x, _, _ in series.values() for v in x})
        axis.set_xticks(ticks, [str(t) for t in ticks])
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def gradient_norms(profiles: Mapping[str, Mapping[str, Sequence[float]]], *, title: str) -> Figure:
    """Weights and biases in two panels: mean gradient L2 norm per layer (log scale), one line per model.

    Biases get no panel when at most one layer has them (a conv net with batch norm: only the head).
    """
    kinds = [
        kind
        for kind in ("weight", "bias")
        if max(np.isfinite(np.asarray(p[kind], dtype=float)).sum() for p in profiles.values()) > 1
    ]
    figure, axes = subplots(1, len(kinds), figsize=(5.5 * len(kinds) + 0.5, 4), sharey=True, squeeze=False)
    axes = axes[0]
    if "bias" not in kinds:
        title += "\n(weights; only the head has a bias)"
    for axis, kind in zip(axes, kinds, strict=True):
        for label, profile in profiles.items():
            values = np.asarray(profile[kind], dtype=float)
            axis.plot(np.arange(1, len(values) + 1), values, marker=".", label=label)
        axis.set_yscale("log")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("layer (input → output)")
        if len(kinds) > 1:
            axis.set_title({"weight": "weights", "bias": "biases"}[kind])
        axis.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("mean ‖∂L/∂θ‖₂")
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    return figure


def curves_grid(
    panels: Mapping[str, Mapping[str, Sequence[Sequence[float]]]], *, ylabel: str, xlabel: str = "epoch"
) -> Figure:
    """A grid of panels ``title -> {label -> [curve per seed]}``; each line is the mean over seeds."""
    n = len(panels)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    figure, axes = subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for axis, (title, lines) in zip(axes.flat, panels.items(), strict=False):
        for label, runs in lines.items():
            curves = np.asarray(runs, dtype=float)
            mean = curves.mean(axis=0)
            x = np.arange(1, len(mean) + 1)
            (line,) = axis.plot(x, mean, label=label, marker="o" if len(x) == 1 else None)  # one epoch: a point
            if len(curves) > 1:
                axis.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if all(len(runs[0]) == 1 for runs in lines.values()):
            axis.set_xticks([1])
        axis.grid(alpha=0.3)
    for axis in axes.flat[n:]:
        axis.axis("off")
    for axis in axes[:, 0]:
        axis.set_ylabel(ylabel)
    axes.flat[0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def _show(axis, image: np.ndarray, heat: np.ndarray | None = None) -> None:
    """An (H, W, C) image in [0, 1], grey when it has one channel, with ``heat`` (H, W) laid over it."""
    axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1,
                interpolation="bilinear")  # fmt: skip
    if heat is not None:
        axis.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
    axis.set_xticks([])
    axis.set_yticks([])


def cam_grid(images: np.ndarray, maps: np.ndarray, titles: Sequence[str], *, method: str) -> Figure:
    """Columns of image / heatmap / overlay, one column per image; ``images`` (N, H, W, C), ``maps`` (N, H, W)."""
    n = len(images)
    figure, axes = subplots(3, n, figsize=(1.9 * n, 6.4), squeeze=False)
    for i in range(n):
        _show(axes[0, i], images[i])
        axes[0, i].set_title(titles[i], fontsize=8)
        axes[1, i].imshow(maps[i], cmap="jet", vmin=0, vmax=1, interpolation="bilinear")
        axes[1, i].set_xticks([])
        axes[1, i].set_yticks([])
        _show(axes[2, i], images[i], maps[i])
    for axis, name in zip(axes[:, 0], ("image", method, "overlay"), strict=True):
        axis.set_ylabel(name)
    figure.tight_layout()
    return figure


def line_panels(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    *,
    xlabel: str,
    title: str | None = None,
    xticks: Sequence[float] | None = None,
    xticklabels: Sequence[str] | None = None,
    ylims: Mapping[str, tuple[float, float]] | None = None,
    log2_x: bool = False,
    columns: int = 4,
) -> Figure:
    """A row (or grid) of panels ``title -> {label -> (x, y)}``; a legend only where there are several lines."""
    n = len(panels)
    cols = min(n, columns)
    rows = math.ceil(n / cols)
    figure, axes = subplots(rows, cols, figsize=(3.7 * cols, 3.2 * rows), squeeze=False)
    for axis, (panel, lines) in zip(axes.flat, panels.items(), strict=False):
        for label, (x, y) in lines.items():
            axis.plot(x, np.asarray(y, dtype=float), marker="o", markersize=4, label=label)
        axis.set_title(panel, fontsize=10)
        axis.set_xlabel(xlabel)
        if log2_x:
            axis.set_xscale("log", base=2)
            axis.xaxis.set_minor_locator(NullLocator())
        if xticks is not None:
            axis.set_xticks(list(xticks), list(xticklabels) if xticklabels is not None else None)
        if ylims and panel in ylims:
            axis.set_ylim(*ylims[panel])
        axis.grid(alpha=0.3)
        if len(lines) > 1:
            axis.legend(fontsize=8)
    for axis in axes.flat[n:]:
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def cam_comparison(images: np.ndarray, maps: Mapping[str, np.ndarray], titles: Sequence[str]) -> Figure:
    """One row per image: the image, then its overlay for each method."""
    n, methods = len(images), list(maps)
    figure, axes = subplots(n, 1 + len(methods), figsize=(1.9 * (1 + len(methods)), 2.0 * n), squeeze=False)
    for i in range(n):
        _show(axes[i, 0], images[i])
        axes[i, 0].set_ylabel(titles[i], fontsize=7)
        for j, method in enumerate(methods, start=1):
            _show(axes[i, j], images[i], maps[method][i])
            if i == 0:
                axes[i, j].set_title(method, fontsize=9)
    axes[0, 0].set_title("image", fontsize=9)
    figure.tight_layout()
    return figure


def cam_figures(
    images: np.ndarray, maps: Mapping[str, np.ndarray], titles: Sequence[str], *, main: str, compared: int = 6
) -> tuple[Figure, Figure]:
    """A model's :func:`cam_grid` of the ``main`` method's maps, and the :func:`cam_comparison` of every method
    on the first ``compared`` images."""
    shown = slice(0, compared)
    grid = cam_grid(images, maps[main], titles, method=main)
    return grid, cam_comparison(images[shown], {m: v[shown] for m, v in maps.items()}, titles[shown])


def grouped_bars(
    panels: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    *,
    xlabel: str,
    title: str | None = None,
    ylims: Mapping[str, tuple[float, float]] | None = None,
    value_format: str = "{:.2f}",
    width: float = 4.2,
) -> Figure:
    """Panels ``title -> {group -> {series -> value}}``: one cluster of bars per group, values written on top.

    A missing or None value leaves a gap (e.g. mean iterations where no attack succeeded). ``width``: inches
    per panel.
    """
    n = len(panels)
    figure, axes = subplots(1, n, figsize=(width * n, 3.6), squeeze=False)
    for axis, (panel, groups) in zip(axes.flat, panels.items(), strict=True):
        series = list(dict.fromkeys(s for values in groups.values() for s in values))
        bar_width = 0.8 / len(series)
        for index, name in enumerate(series):
            offsets = np.arange(len(groups)) + (index - (len(series) - 1) / 2) * bar_width
            values = [groups[g].get(name) for g in groups]
            heights = [np.nan if v is None else v for v in values]
            bars = axis.bar(offsets, heights, bar_width, label=name, color=f"C{index}")
            axis.bar_label(bars, [("" if v is None else value_format.format(v)) for v in values], fontsize=7)
        axis.set_xticks(np.arange(len(groups)), list(groups))
        axis.set_xlabel(xlabel)
        axis.set_title(panel, fontsize=10)
        if ylims and panel in ylims:
            axis.set_ylim(*ylims[panel])
        else:
            axis.margins(y=0.15)
        axis.grid(alpha=0.3, axis="y")
    if len(series) > 1:
        axes.flat[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def interval_bars(
    panels: Mapping[str, Mapping[str, Mapping[str, float]]], *, title: str | None = None, width: float = 3.2
) -> Figure:
    """Panels ``title -> {series -> {"estimate", "low", "high"}}`` of fractions: one bar per series, in %, with its
    interval as an error bar and its value written above it."""
    n = len(panels)
    figure, axes = subplots(1, n, figsize=(width * n, 3.6), squeeze=False)
    for axis, (panel, series) in zip(axes.flat, panels.items(), strict=True):
        names = list(series)
        estimates = 100 * np.array([series[s]["estimate"] for s in names], dtype=float)
        errors = 100 * np.array([[series[s]["estimate"] - series[s]["low"], series[s]["high"] - series[s]["estimate"]]
                                 for s in names], dtype=float).T  # fmt: skip
        bars = axis.bar(np.arange(len(names)), estimates, 0.6, yerr=errors, capsize=4,
                        color=[f"C{i}" for i in range(len(names))])  # fmt: skip
        axis.bar_label(bars, [f"{v:.1f}" for v in estimates], fontsize=7, padding=6)
        axis.set_ylabel("%")
        axis.set_xticks(np.arange(len(names)), names, rotation=20, ha="right", fontsize=8)
        axis.set_title(panel, fontsize=10)
        axis.margins(y=0.2)
        axis.grid(alpha=0.3, axis="y")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def image_grid(
    rows: Mapping[str, Sequence[np.ndarray]],
    captions: Mapping[str, Sequence[str]],
    *,
    title: str | None = None,
) -> Figure:
    """Rows ``label -> [image (H, W, C) in [0, 1]]`` with a caption over every image; equal-length rows."""
    n_rows, n_cols = len(rows), max(len(images) for images in rows.values())
    figure, axes = subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 2.15 * n_rows), squeeze=False)
    for axes_row, (label, images) in zip(axes, rows.items(), strict=True):
        for col, axis in enumerate(axes_row):
            axis.set_xticks([])
            axis.set_yticks([])
            if col >= len(images):
                axis.axis("off")
                continue
            image = np.clip(images[col], 0, 1)
            axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", interpolation="nearest")
            axis.set_title(captions[label][col], fontsize=8)
        axes_row[0].set_ylabel(label, fontsize=9)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def adversarial_examples(
    original: np.ndarray,
    adversarial: np.ndarray,
    eps: float,
    before: Sequence[str],
    steps: Sequence[str],
    after: Sequence[str],
    *,
    title: str,
) -> Figure:
    """Originals, their perturbations amplified so that ±``eps`` spans black to white, and the adversarial
    images, (N, H, W, C) in [0, 1]; captions: the prediction before, the steps taken, the prediction after."""
    scale = 0.5 / eps if eps > 0 else 1.0
    perturbation = f"perturbation ×{scale:.0f}"
    return image_grid(
        {"original": list(original), perturbation: list(0.5 + (adversarial - original) * scale),
         "adversarial": list(adversarial)},
        {"original": before, perturbation: steps, "adversarial": after},
        title=title,
    )  # fmt: skip


def heatmap(
    values: np.ndarray, rows: Sequence[str], columns: Sequence[str], *, xlabel: str, title: str, label: str
) -> Figure:
    """A (rows, columns) grid of fractions in [0, 1], each cell written in %, with a colour bar named ``label``."""
    values = np.asarray(values, dtype=float)
    figure, axis = subplots(1, 1, figsize=(1.0 * len(columns) + 3.5, 0.35 * len(rows) + 1.6))
    image = axis.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label=label)
    axis.set_xticks(np.arange(len(columns)), list(columns))
    axis.set_yticks(np.arange(len(rows)), list(rows), fontsize=8)
    axis.set_xlabel(xlabel)
    for (i, j), value in np.ndenumerate(values):
        axis.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                  color="black" if value > 0.6 else "white")  # fmt: skip
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def confusion(matrix: np.ndarray, classes: Sequence[str], per_class: Sequence[float], *, title: str) -> Figure:
    """The confusion matrix normalised per true class (rows), beside the accuracy of each class."""
    matrix = np.asarray(matrix, dtype=float)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = min(max(4.0, 0.35 * n + 2), 12)
    figure, (left, right) = subplots(1, 2, figsize=(2 * size + 1, size), gridspec_kw={"width_ratios": [1.3, 1]})
    image = left.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=left, fraction=0.046, pad=0.04)
    ticks = np.arange(n) if n <= 30 else np.arange(0, n, max(1, n // 20))
    labels = [classes[i] for i in ticks]
    left.set_xticks(ticks, labels, rotation=90, fontsize=7)
    left.set_yticks(ticks, labels, fontsize=7)
    left.set_xlabel("predicted class")
    left.set_ylabel("true class")
    if n <= 12:
        for (i, j), value in np.ndenumerate(rates):
            if value >= 0.005:
                left.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                          color="white" if value > 0.5 else "black")  # fmt: skip
    right.barh(np.arange(n), np.nan_to_num(np.asarray(per_class, dtype=float)), color="C0")
    right.set_yticks(ticks, labels, fontsize=7)
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_xlabel("accuracy of the class")
    right.grid(alpha=0.3, axis="x")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def reliability_diagram(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]], *, title: str
) -> Figure:
    """Accuracy against confidence per bin, ``label -> (bin confidence, bin accuracy, bin count)``, with the
    diagonal of perfect calibration; below, how many samples fell in each bin."""
    figure, (top, bottom) = subplots(2, 1, figsize=(5.2, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for index, (label, (confidence, accuracy, counts)) in enumerate(curves.items()):
        conf, acc = np.asarray(confidence, dtype=float), np.asarray(accuracy, dtype=float)
        kept = np.isfinite(conf) & np.isfinite(acc)
        top.plot(conf[kept], acc[kept], marker="o", markersize=4, color=f"C{index}", label=label)
        bottom.plot(conf[kept], np.asarray(counts, dtype=float)[kept], marker=".", color=f"C{index}")
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.grid(alpha=0.3)
    top.legend(fontsize=8)
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (largest softmax probability)")
    bottom.set_ylabel("images")
    bottom.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
