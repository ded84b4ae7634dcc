"""Running the ``dlapps`` command, in a subprocess as a user would or through its entry point in this process, and
spies on what it does: the figures it draws, the epochs it trains; and seeded random predictions for the metrics'
tests."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch


def dlapps(*args: str, data_root: Path | None = None, **variables: str) -> subprocess.CompletedProcess:
    """``dlapps *args`` in a subprocess; ``variables`` are added to its environment."""
    env = {k: v for k, v in os.environ.items() if k != "DLAPPS_DATA"} | variables
    if data_root is not None:
        env["DLAPPS_DATA"] = str(data_root)
    return subprocess.run([sys.executable, "-m", "dlapps", *args], capture_output=True, text=True, env=env, timeout=600)


def dlapps_main(
    *args: str, data_root: Path | None = None, figures: Path | None = None, epochs: Path | None = None, **variables: str
) -> subprocess.CompletedProcess:
    """``dlapps *args`` through the command's entry point (``dlapps.cli:main``) in this process, with its own
    environment and the spies of :func:`spy_env`, returning what :func:`dlapps` would. Starting Python and torch
    again costs seconds a command, so tests run commands here unless what they check is the process itself
    (signals, locks, plug-ins loaded from the environment, torchrun); the studies' data stay decoded between them."""
    import pytest

    from dlapps.cli import main
    from dlapps.train import trainer
    from figures_check import spying

    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, spying(figures) if figures else contextlib.nullcontext():
        for name in ("DLAPPS_DATA", "DLAPPS_DEBUG", "DLAPPS_PLUGINS"):
            patch.delenv(name, raising=False)
        if data_root is not None:
            patch.setenv("DLAPPS_DATA", str(data_root))
        for name, value in variables.items():
            patch.setenv(name, value)
        if epochs is not None:
            patch.setattr(trainer._Training, "epoch", recording_epochs(trainer._Training.epoch, epochs))
        patch.setattr(sys, "argv", ["dlapps", *args])
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main()
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    return subprocess.CompletedProcess(["dlapps", *args], code, stdout.getvalue(), stderr.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlapps: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def chromium() -> str:
    """Debian's Chromium, for tests that open an HTML report: required under CI (``CI`` set), else they skip."""
    import pytest

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium must be installed in CI (see .ci/run)")
        pytest.skip("chromium is not installed")
    return executable


EPOCHS = "DLAPPS_TEST_EPOCHS"  # the file the spy records training epochs in


def spy_env(*, figures: Path | None = None, epochs: Path | None = None) -> dict[str, str]:
    """The environment under which a ``dlapps`` subprocess loads the ``spies`` plug-in (tests/spies.py): it keeps
    every figure it saves in the folder ``figures`` (figures_check.py) and records every epoch it trains in the
    file ``epochs`` (:func:`epochs_trained`)."""
    env = {"DLAPPS_PLUGINS": "spies", "PYTHONPATH": python_path(Path(__file__).resolve().parent)}
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        env["DLAPPS_TEST_FIGURES"] = str(figures)
    if epochs is not None:
        env[EPOCHS] = str(epochs)
    return env


def python_path(folder: Path) -> str:
    """``$PYTHONPATH`` with ``folder`` in front, so that a subprocess imports a module there as well as what this
    process imports (dlapps itself, where it is not installed)."""
    return os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)


def recording_epochs(train_epoch, log: Path):
    """``train_epoch`` (the method ``dlapps.train.trainer._Training.epoch``), also appending a line to ``log`` for
    each epoch it trains: the parameter count of the model. Appended, so that epochs trained in forked workers
    count too."""

    def recorded(training, *args, **kwargs):
        with open(log, "a", encoding="ascii") as handle:
            handle.write(f"{sum(p.numel() for p in training.model.parameters())}\n")
        return train_epoch(training, *args, **kwargs)

    return recorded


def epochs_trained(log: Path) -> list[int]:
    """The epochs :func:`recording_epochs` recorded in ``log``: the parameter count of the model of each."""
    return [int(line) for line in log.read_text(encoding="ascii").split()] if log.exists() else []


def random_predictions(n: int = 500, classes: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, classes) logits and labels: the label is the prediction 60% of the time, else drawn at random."""
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, classes, generator=generator)
    labels = torch.where(torch.rand(n, generator=generator) < 0.6, logits.argmax(1),
                         torch.randint(0, classes, (n,), generator=generator))  # fmt: skip
    return logits, labels


def trained_small_cnn(folder: Path, dataset: str, data_root: Path, *settings: str) -> Path:
    """The checkpoint of a small CNN that ``dlapps train`` writes into ``folder`` (``settings``: ``key=value``)."""
    args = ["train", "--model", "small_cnn", "--dataset", dataset, "--out", str(folder), "--no-progress"]
    trained = dlapps_main(*args, *(item for setting in settings for item in ("--set", setting)), data_root=data_root)
    assert trained.returncode == 0, trained.stderr
    (checkpoint,) = folder.glob(f"small_cnn-{dataset}-*.safetensors")
    return checkpoint
