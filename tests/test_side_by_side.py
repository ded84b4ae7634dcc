"""Runs trained side by side in forked workers: the same models as trained alone, errors that surface."""

import io
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from dlapps.attacks import AdversarialStepLoss
from dlapps.errors import ConfigError, TrainingDiverged
from dlapps.experiments.base import RunContext
from dlapps.models.classifier import build_from_card
from dlapps.train import ClassifierRecipe, TrainConfig, Training, load_checkpoint, obtain_classifier, side_by_side
from dlapps.train.recipes import checkpoint_path
from dlapps.train.side_by_side import is_trained, side_by_side_pays, train_side_by_side
from helpers import epochs_trained, recording_epochs

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="runs train side by side on Linux only")

CPU = torch.device("cpu")


def _recipe(
    depth: int, seed: int = 0, lr: float = 5e-3, epochs: int = 3, objective="cross-entropy"
) -> ClassifierRecipe:
    return ClassifierRecipe(
        "residual_mlp", (("depth", depth), ("width", 16)), "mnist", train=TrainConfig(epochs=epochs, lr=lr),
        train_subset=3000, test_subset=500, augment=False, seed=seed, objective=objective,
    )  # fmt: skip


class RecordedProgress:
    """The part of rich's Progress the relay uses, recording what it is told."""

    def __init__(self) -> None:
        self.console = Console(file=io.StringIO(), width=200)
        self.added: list[tuple[str, float]] = []
        self.advanced: dict[int, float] = {}
        self.live: set[int] = set()

    def add_task(self, description: str, total: float | None = None, completed: float = 0) -> int:
        self.added.append((description, total))
        task = len(self.added) - 1
        self.live.add(task)
        self.advanced[task] = completed
        return task

    def advance(self, task: int, advance: float = 1) -> None:
        self.advanced[task] += advance

    def remove_task(self, task: int) -> None:
        self.live.discard(task)


def test_a_run_trained_by_workers_is_the_run_trained_alone_on_one_thread(tmp_path, mnist_train, mnist_test):
    adversarial = AdversarialStepLoss("fgsm", eps=0.1)
    recipes = [
        Training("deep", _recipe(8)),
        Training("shallow", _recipe(2, seed=1)),
        Training("adversarial", _recipe(2, objective=adversarial.objective), adversarial),
    ]
    progress = RecordedProgress()
    trained = train_side_by_side(
        recipes, tmp_path / "side", workers=2, train=mnist_train, test=mnist_test, progress=progress,
        only_if_faster=False,
    )  # fmt: skip
    assert trained == {run.recipe.key() for run in recipes}
    assert all(is_trained(run.recipe, tmp_path / "side") for run in recipes)
    # one bar per run, named by its label, removed when done
    assert sorted(label for label, _ in progress.added) == ["adversarial", "deep", "shallow"]
    assert progress.live == set()
    assert "training 3 runs side by side, 2 at a time" in progress.console.file.getvalue()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _, recipe, step_loss in recipes:
            alone, reused = obtain_classifier(
                recipe, tmp_path / "alone", CPU, mnist_train, mnist_test, step_loss=step_loss
            )
            side, reused_side = obtain_classifier(recipe, tmp_path / "side", CPU, mnist_train, mnist_test)
            assert (reused, reused_side) == (False, True)
            for a, b in zip(alone.module.state_dict().values(), side.module.state_dict().values(), strict=True):
                assert torch.equal(a, b)
            assert alone.info["history"][-1]["test_acc"] == side.info["history"][-1]["test_acc"] > 0.3  # chance: 0.1
    finally:
        torch.set_num_threads(threads)
    # nothing left to train: no workers are started
    assert train_side_by_side(recipes, tmp_path / "side", workers=2, train=mnist_train, test=mnist_test) == set()


def _trained_runs(ctx, plan, train, test):
    with ctx.progress() as progress:
        return ctx.trained_runs(plan, train, test, progress)


def test_trained_runs_trains_side_by_side_and_counts_no_cache_hits(tmp_path, mnist_train, mnist_test):
    ctx = RunContext(out=tmp_path / "study", device=CPU, show_progress=False, workers=2)
    plan = [(f"depth {d}", {"depth": d}, _recipe(d)) for d in (2, 4, 6)]
    records, models = _trained_runs(ctx, plan, mnist_train, mnist_test)
    assert [r["depth"] for r in records] == [2, 4, 6] and list(models) == ["depth 2", "depth 4", "depth 6"]
    assert ctx.trained_by_workers == {recipe.key() for _, _, recipe in plan}
    assert ctx.reused == 0
    assert all(r["train_seconds"] > 0 and r["test_acc"] > 0.5 for r in records)
    again = RunContext(out=tmp_path / "study", device=CPU, show_progress=False, workers=2)
    _trained_runs(again, plan, mnist_train, mnist_test)
    assert again.reused == 3 and again.trained_by_workers == set()


def test_an_error_in_a_worker_stops_the_others_and_keeps_their_finished_epochs(
    tmp_path, monkeypatch, mnist_train, mnist_test
):
    from dlapps.train import trainer

    slow = _recipe(64, epochs=40)  # trains for minutes unless stopped
    diverging = _recipe(2, lr=1e12, epochs=1)
    log = tmp_path / "epochs"  # each epoch a worker starts: the parameter count of its model
    monkeypatch.setattr(trainer._Training, "epoch", recording_epochs(trainer._Training.epoch, log))
    with pytest.raises(TrainingDiverged, match="training diverged"):
        train_side_by_side(
            [Training("slow", slow), Training("diverging", diverging)],
            tmp_path,
            workers=2,
            train=mnist_train,
            test=mnist_test,
        )
    assert not is_trained(slow, tmp_path) and not checkpoint_path(diverging, tmp_path).exists()
    sizes = {sum(p.numel() for p in _model_of(r, mnist_train).parameters()): r for r in (slow, diverging)}
    started = [sizes[n] for n in epochs_trained(log)]
    assert started.count(diverging) == 1 and 1 <= started.count(slow) < 10  # stopped in its first epochs, not after 40
    if checkpoint_path(slow, tmp_path).exists():  # an epoch finished before the stop: it is there to resume
        info = load_checkpoint(checkpoint_path(slow, tmp_path), _model_of(slow, mnist_train))
        assert 1 <= info["epoch"] <= started.count(slow)


def _model_of(recipe: ClassifierRecipe, train) -> torch.nn.Module:
    from dlapps.models.classifier import build_from_card

    return build_from_card(recipe.card(train))


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="one core: nothing to train side by side")
def test_by_default_runs_go_side_by_side_where_a_few_steps_measure_it_faster(
    tmp_path, monkeypatch, mnist_train, mnist_test
):
    threads = torch.get_num_threads()
    # the measurement: a median step time on one thread and on all, and the thread count left as it was (which
    # is faster depends on the host and its load, so the decision below is taken on given times)
    measured = side_by_side._step_seconds(Training("mlp", _recipe(8)), mnist_train, (1, threads))
    assert set(measured) == {1, threads} and all(s > 0 for s in measured.values())
    assert torch.get_num_threads() == threads
    plan = [(f"depth {d}", {"depth": d}, _recipe(d, epochs=1)) for d in (2, 4)]
    seconds = {1: 1.0, threads: 1 / 1.2}  # where all threads train 1.2x faster than one, two one-thread runs are sooner
    monkeypatch.setattr(side_by_side, "_step_seconds", lambda run, train, counts: {n: seconds[n] for n in counts})
    assert side_by_side_pays(Training("mlp", _recipe(8)), mnist_train, workers=2)
    ctx = RunContext(out=tmp_path / "study", device=CPU, show_progress=False)
    _trained_runs(ctx, plan, mnist_train, mnist_test)
    assert ctx.trained_by_workers == {recipe.key() for _, _, recipe in plan}
    seconds[threads] = 1 / 1.9  # where they train 1.9x faster, one run after the other is sooner
    assert not side_by_side_pays(Training("mlp", _recipe(8)), mnist_train, workers=2)
    ctx = RunContext(out=tmp_path / "other", device=CPU, show_progress=False, models_dir=tmp_path / "other-models")
    records, _ = _trained_runs(ctx, plan, mnist_train, mnist_test)
    assert ctx.trained_by_workers == set() and len(records) == 2 and ctx.reused == 0


def test_worker_counts_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        RunContext(out=tmp_path, device=CPU, workers=0)
    with pytest.raises(ConfigError, match="only on the CPU"):
        RunContext(out=tmp_path, device=torch.device("meta"), workers=2)
    with pytest.raises(ConfigError, match="compiled runs train one at a time"):
        RunContext(out=tmp_path, device=CPU, workers=2, compile=True)
    assert RunContext(out=tmp_path, device=CPU, workers=1, compile=True).training_workers == 1
    assert RunContext(out=tmp_path, device=torch.device("meta")).training_workers == 1
    assert RunContext(out=Path(tmp_path), device=CPU).training_workers == torch.get_num_threads()


def test_runs_start_by_the_work_they_compute_not_their_weights(cifar10_test):
    """A residual net computes more than its plain twin of the same weights, an adversarial objective more than
    the clean one, a convolution over a 32×32 map more than a linear layer of as many weights; work grows with
    images and epochs; and measuring it leaves the random stream alone."""

    def cnn(blocks: int, skip: bool = True, epochs: int = 2, subset: int = 1000) -> ClassifierRecipe:
        hparams = (("blocks", blocks), ("skip", skip), ("widths", (8, 16, 32)))
        return ClassifierRecipe("cifar_resnet", hparams, train=TrainConfig(epochs=epochs), train_subset=subset)

    def work(recipe: ClassifierRecipe, step_loss=None) -> int:
        return side_by_side.run_work(Training("run", recipe, *([step_loss] if step_loss else [])), cifar10_test)

    state = torch.random.get_rng_state()
    plain, residual = work(cnn(5, skip=False)), work(cnn(5))
    assert residual > plain > work(cnn(2)) and work(cnn(5, epochs=4)) == 2 * residual
    assert work(cnn(5, subset=2000)) == 2 * residual
    small = ClassifierRecipe("small_cnn", train=TrainConfig(epochs=2), train_subset=1000)
    assert work(small, AdversarialStepLoss("fgsm-rs", eps=8 / 255)) > 2 * work(small)
    assert torch.equal(torch.random.get_rng_state(), state)
    wide_mlp = ClassifierRecipe("mlp", (("depth", 2), ("width", 64)), train=TrainConfig(epochs=2), train_subset=1000)
    mlp_weights = sum(p.numel() for p in build_from_card(wide_mlp.card(cifar10_test)).parameters())
    cnn_weights = sum(p.numel() for p in build_from_card(cnn(2).card(cifar10_test)).parameters())
    assert mlp_weights > cnn_weights and work(wide_mlp) < work(cnn(2))
