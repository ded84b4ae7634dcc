"""Figures judged by what they show, not by the size of their files.

A study draws matplotlib Figures and then saves them as PNG files. A test runs it with the ``spies`` plug-in
(``helpers.spy_env(figures=...)`` for the ``dlapps`` command, :func:`spying` in-process): every figure saved is
also kept, pickled, under its PNG file's name. The test then compares what the figure draws (line data, bar
heights, image data) with the numbers in ``results.json``, and :func:`assert_figures` checks that each PNG
file is that figure rendered, and that it is not blank.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import imread
from PIL import Image

SPY = "DLAPPS_TEST_FIGURES"  # the folder the spy keeps figures in


def keep(figure: Figure, fname) -> None:
    """Pickle ``figure`` into ``$DLAPPS_TEST_FIGURES`` under the name of the PNG it was saved as (a file saved
    to a temporary name first, ``.name.png.tmp123.png``, is kept as ``name.png``)."""
    name = Path(os.fspath(fname)).name
    name = re.sub(r"^\.(.+?\.png)\.tmp.*$", r"\1", name)
    (Path(os.environ[SPY]) / f"{name}.pickle").write_bytes(pickle.dumps(figure))


def install() -> None:
    """Make every ``Figure.savefig`` also :func:`keep` the figure (what the plug-in does on import)."""
    if getattr(Figure.savefig, "kept_by_spy", False):
        return
    save = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        result = save(self, fname, *args, **kwargs)
        if isinstance(fname, str | os.PathLike):
            keep(self, fname)
        return result

    savefig.kept_by_spy = True
    savefig.original = save
    Figure.savefig = savefig


@contextmanager
def spying(folder: Path) -> Iterator[Path]:
    """In-process: figures saved inside the block are kept in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    before, saved = os.environ.get(SPY), Figure.savefig
    os.environ[SPY] = str(folder)
    install()
    try:
        yield folder
    finally:
        Figure.savefig = saved
        if before is None:
            del os.environ[SPY]
        else:
            os.environ[SPY] = before


def kept_figures(folder: Path) -> dict[str, Figure]:
    """The figures kept in ``folder``, by PNG file name."""
    return {path.name.removesuffix(".pickle"): pickle.loads(path.read_bytes()) for path in folder.glob("*.pickle")}


# --- what a figure draws ---------------------------------------------------------------------------------------


def panel(figure: Figure, title: str) -> Axes:
    """The axes titled ``title`` (exactly one)."""
    found = [axis for axis in figure.axes if axis.get_title() == title]
    assert len(found) == 1, f"no single panel {title!r} in {[a.get_title() for a in figure.axes]}"
    return found[0]


def lines(axis: Axes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The labelled lines of ``axis`` (matplotlib names unlabelled ones ``_child...``): label -> (x, y)."""
    return {
        line.get_label(): (np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float))
        for line in axis.get_lines()
        if not line.get_label().startswith("_")
    }


def bars(axis: Axes) -> dict[str, list[float]]:
    """The bar series of ``axis``: label -> heights (NaN where a bar is left out)."""
    return {container.get_label(): [bar.get_height() for bar in container] for container in axis.containers}


def images(axis: Axes) -> list[np.ndarray]:
    """The arrays ``axis`` shows with ``imshow``, bottom first."""
    return [np.asarray(image.get_array()) for image in axis.get_images()]


def assert_cam_grid_is_gradcam(figure: Figure, model, layer: str, atol: float = 1e-3, reshape_transform=None) -> None:
    """A CAM grid (images, maps, overlays: one column per image) shows, under each image, the map
    pytorch-grad-cam's Grad-CAM draws for the model's prediction (CAM's map, where the head is global average
    pooling and one linear layer), and that map again over the image; a transformer's tokens laid out on the
    patch grid by pytorch-grad-cam's ``reshape_transform``."""
    import copy

    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = copy.deepcopy(model)  # the reference leaves gradients on the weights: not on a model other tests share
    layer = model.get_submodule(layer)
    grid = np.array(figure.axes).reshape(3, -1)
    shown = np.stack([images(axis)[0] for axis in grid[0]])  # (N, H, W, C) in [0, 1]
    maps = np.stack([images(axis)[0] for axis in grid[1]])
    x = torch.from_numpy(shown).permute(0, 3, 1, 2).float().contiguous()
    with torch.no_grad():
        predicted = model(x).argmax(1)
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape_transform) as explainer:
        expected = explainer(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in predicted])
    assert maps.shape == expected.shape and maps.max() > 0.99  # each map is normalised to [0, 1]
    np.testing.assert_allclose(maps, expected, atol=atol)
    for axis, image, heat in zip(grid[2], shown, maps, strict=True):
        np.testing.assert_array_equal(images(axis)[0], image)
        np.testing.assert_array_equal(images(axis)[1], heat)


def area_under(x, y) -> float:
    """The area under a curve drawn through the points (x, y), by the trapezoid rule."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def assert_line(axis: Axes, label: str, x, y, tolerance: float = 1e-9) -> None:
    """``axis`` draws a line labelled ``label`` through exactly the points (x, y); ``""``: its one unlabelled line."""
    drawn = lines(axis)
    if label == "":
        unlabelled = [line for line in axis.get_lines() if line.get_label().startswith("_")]
        assert len(unlabelled) == 1, f"{len(unlabelled)} unlabelled lines in {axis.get_title()!r}"
        drawn[""] = (np.asarray(unlabelled[0].get_xdata(), float), np.asarray(unlabelled[0].get_ydata(), float))
    assert label in drawn, f"no line {label!r} among {list(drawn)} in {axis.get_title()!r}"
    x_drawn, y_drawn = drawn[label]
    np.testing.assert_allclose(x_drawn, np.asarray(x, dtype=float), atol=tolerance, err_msg=label)
    np.testing.assert_allclose(y_drawn, np.asarray(y, dtype=float), atol=tolerance, err_msg=label)


# --- what a PNG file shows --------------------------------------------------------------------------------------


def _render(figure: Figure, dpi: float) -> np.ndarray:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    buffer.seek(0)
    return imread(buffer)


def assert_png_shows(path: Path, figure: Figure) -> None:
    """The PNG at ``path`` is ``figure`` rendered (at the PNG's own resolution), and it is not blank: a fair
    part of it is drawn on, and more of it in colour (beyond black, white and grey) than a legend's swatches
    alone, which take about a hundred pixels each (a figure whose lines are single points without markers)."""
    pixels = imread(path)[..., :3]
    with Image.open(path) as png:
        dpi = round(png.info["dpi"][0])  # stored as pixels per metre: 130 reads back as 129.9972
    again = _render(figure, dpi)[..., :3]
    assert pixels.shape == again.shape, f"{path.name}: {pixels.shape} pixels, the figure renders {again.shape}"
    differ = (np.abs(pixels - again).max(axis=-1) > 0.1).mean()
    assert differ < 0.001, f"{path.name}: {differ:.2%} of its pixels are not the figure's"
    drawn = (pixels < 0.9).any(axis=-1).mean()  # pixels that are not (near) white
    coloured = pixels.max(axis=-1) - pixels.min(axis=-1) > 0.25  # neither white, black nor grey
    colours = np.unique((pixels[coloured] * 15).round(), axis=0)
    assert drawn > 0.03, f"{path.name}: only {drawn:.1%} of it is drawn on"
    assert coloured.sum() >= 400 and len(colours) >= 3, f"{path.name}: {coloured.sum()} pixels, {len(colours)} colours"


def assert_figures(out: Path, report: str, kept: dict[str, Figure], *names: str) -> dict[str, Figure]:
    """Each of ``names`` is shown in ``report`` and is, in ``out``, the PNG of the figure the study drew;
    returns those figures by name."""
    for name in names:
        assert f"({name})" in report, name
        assert name in kept, f"{name} was not drawn; drawn: {sorted(kept)}"
        assert_png_shows(out / name, kept[name])
    return {name: kept[name] for name in names}
