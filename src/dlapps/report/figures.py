"""Figures built from plain numbers (lists and dicts), so any study can reuse them.

Each function returns a matplotlib Figure; :func:`dlapps.report.io.save_figure` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def mean_std_lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log2_x: bool = False,
    references: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> plt.Figure:
    """One line per series ``label -> (x, mean, std)`` with a ±std band.

    ``references`` maps a series label to published ``(x, y)`` values, drawn dotted in the series' colour.
    """
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
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


def gradient_norms(profiles: Mapping[str, Mapping[str, Sequence[float]]], *, title: str) -> plt.Figure:
    """Two panels, weights and biases: mean gradient L2 norm per layer (log scale), one line per model."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, kind in zip(axes, ("weight", "bias"), strict=True):
        for label, profile in profiles.items():
            values = np.asarray(profile[kind], dtype=float)
            axis.plot(np.arange(1, len(values) + 1), values, marker=".", label=label)
        axis.set_yscale("log")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("layer (input → output)")
        axis.set_title({"weight": "weights", "bias": "biases"}[kind])
        axis.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("mean ‖∂L/∂θ‖₂")
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    return figure


def curves_grid(
    panels: Mapping[str, Mapping[str, Sequence[Sequence[float]]]], *, ylabel: str, xlabel: str = "epoch"
) -> plt.Figure:
    """A grid of panels ``title -> {label -> [curve per seed]}``; each line is the mean over seeds."""
    n = len(panels)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for axis, (title, lines) in zip(axes.flat, panels.items(), strict=False):
        for label, runs in lines.items():
            curves = np.asarray(runs, dtype=float)
            mean = curves.mean(axis=0)
            x = np.arange(1, len(mean) + 1)
            (line,) = axis.plot(x, mean, label=label)
            if len(curves) > 1:
                axis.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    for axis in axes.flat[n:]:
        axis.axis("off")
    for axis in axes[:, 0]:
        axis.set_ylabel(ylabel)
    axes.flat[0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def _show(axis, image: np.ndarray, heat: np.ndarray | None = None) -> None:
    axis.imshow(image, interpolation="bilinear")
    if heat is not None:
        axis.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
    axis.set_xticks([])
    axis.set_yticks([])


def cam_grid(images: np.ndarray, maps: np.ndarray, titles: Sequence[str], *, method: str) -> plt.Figure:
    """Columns of image / heatmap / overlay, one column per image; ``images`` (N, H, W, 3), ``maps`` (N, H, W)."""
    n = len(images)
    figure, axes = plt.subplots(3, n, figsize=(1.9 * n, 6.4), squeeze=False)
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


def cam_comparison(images: np.ndarray, maps: Mapping[str, np.ndarray], titles: Sequence[str]) -> plt.Figure:
    """One row per image: the image, then its overlay for each method."""
    n, methods = len(images), list(maps)
    figure, axes = plt.subplots(n, 1 + len(methods), figsize=(1.9 * (1 + len(methods)), 2.0 * n), squeeze=False)
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
