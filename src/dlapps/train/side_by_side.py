"""Train independent runs side by side on a CPU: one forked worker per core, one thread each.

Small networks use a CPU's cores poorly. On a 2-core Xeon a width-16 MLP trains no faster on two threads
than on one, and a narrow ResNet-32 on one thread (channels-last) about as fast as on two; two such runs at
once, one thread each, finish about twice as soon. Wider convnets (the small CNN, ResNet-20) train 1.9x faster
on two threads, which is more than running side by side gains them, since runs side by side also share caches
and memory bandwidth. So whether it pays is measured, on a few training steps of the largest run, before
any worker starts (:func:`side_by_side_pays`). Runs start largest first (:func:`run_work`), so that the last to
finish are short ones.

Workers are forked, so they share the datasets the parent has decoded without copying them; a forked
process that starts OpenMP threads of its own hangs (GNU OpenMP is not fork-safe), so each keeps to one. Each worker trains a run exactly as
:func:`~dlapps.train.obtain_classifier` does (checkpoint per epoch, resume, reuse) into the shared model
folder, where the parent then finds it. Its progress bar is relayed to the parent's display. A worker dies
with its parent (Linux's parent-death signal), so a run killed even by SIGKILL leaves none training on.
"""

from __future__ import annotations

import copy
import ctypes
import json
import multiprocessing
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from rich.progress import Progress
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from dlapps.data import ImageArrays
from dlapps.errors import ConfigError
from dlapps.models.classifier import build_from_card
from dlapps.models.layout import fast_layout
from dlapps.train.config import Execution
from dlapps.train.distributed import current_world
from dlapps.train.recipes import ClassifierRecipe, checkpoint_path, obtain_classifier
from dlapps.train.relayed_progress import ProgressRelay, RelayedProgress
from dlapps.train.trainer import StepLoss, build_optimizer, cross_entropy_step


class Training(NamedTuple):
    """One run to train: its label (for the progress display), its recipe, its objective (a picklable
    ``step_loss``, as :func:`~dlapps.train.fit` takes)."""

    label: str
    recipe: ClassifierRecipe
    step_loss: StepLoss = cross_entropy_step


def default_workers(device: torch.device) -> int:
    """Runs to train at once when not told: one per core on a CPU of a platform that forks safely (Linux),
    else one (each run on every core)."""
    if device.type != "cpu" or sys.platform != "linux" or current_world().size > 1:
        return 1
    return torch.get_num_threads()


def check_workers(workers: int, device: torch.device) -> None:
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if workers > 1 and default_workers(device) == 1:
        raise ConfigError(
            f"{workers} workers asked for: runs are trained side by side only on the CPU of a Linux machine "
            f"outside torchrun (this run: {device}, {sys.platform}); use 1"
        )


def is_trained(recipe: ClassifierRecipe, folder: Path) -> bool:
    """Whether the recipe's finished checkpoint is in ``folder`` (read from the file's header alone)."""
    path = checkpoint_path(recipe, folder)
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as handle:
            info = json.loads((handle.metadata() or {})["dlapps"])["info"]
    except (SafetensorError, OSError, ValueError, TypeError, KeyError):
        return False  # trained (again) by obtain_classifier, which sets a damaged file aside
    return isinstance(info, dict) and info.get("epoch") == recipe.train.epochs


# Two one-thread runs side by side each train at about 0.85x the speed of one alone (a narrow ResNet-32 on a
# 2-core Xeon: 350 against 420 img/s), as they share caches and memory bandwidth.
SIDE_BY_SIDE_EFFICIENCY = 0.85


def side_by_side_pays(run: Training, train: ImageArrays, workers: int) -> bool:
    """Whether ``workers`` one-thread copies of ``run`` train more images per second together than one run on
    every thread, measured on a few training steps of each (synthetic batches of the run's shape)."""
    threads = torch.get_num_threads()
    try:
        seconds = _step_seconds(run, train, (1, threads))
    finally:
        torch.set_num_threads(threads)
    return workers * SIDE_BY_SIDE_EFFICIENCY / seconds[1] > 1 / seconds[threads]


def _step_seconds(
    run: Training, train: ImageArrays, thread_counts: tuple[int, ...], budget: float = 0.4
) -> dict[int, float]:
    """The median time of a training step of ``run`` on each of ``thread_counts``: two steps each to warm up,
    then at least four each, and as many as fit in ``budget`` seconds per count. The counts take turns step by
    step, so that a slow spell of the machine weighs on all of them alike rather than on the one it fell in."""
    with _trial(run, train, run.recipe.train.batch_size) as (model, inputs, labels):
        trials = {}
        for threads in thread_counts:  # a copy each, in the layout it would train in on that many threads
            torch.set_num_threads(threads)
            copied = fast_layout(copy.deepcopy(model), torch.device("cpu"))
            trials[threads] = (copied, build_optimizer(copied.parameters(), run.recipe.train))
        seconds: dict[int, list[float]] = {threads: [] for threads in thread_counts}
        while any(len(times) < 6 or sum(times[2:]) < budget for times in seconds.values()):
            for threads, (copied, optimizer) in trials.items():
                torch.set_num_threads(threads)
                started = time.perf_counter()
                loss, _ = run.step_loss(copied, inputs, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seconds[threads].append(time.perf_counter() - started)
    return {threads: statistics.median(times[2:]) for threads, times in seconds.items()}


@contextmanager
def _trial(run: Training, train: ImageArrays, batch: int) -> Iterator[tuple[nn.Module, Tensor, Tensor]]:
    """A throwaway model of ``run`` in training mode and a synthetic batch of ``batch`` images of the run's
    shape (in [0, 1], as the models take them), drawn without touching the caller's random stream."""
    with torch.random.fork_rng():
        model = build_from_card(run.recipe.card(train)).train()
        inputs = torch.rand(batch, *train.image_shape)
        labels = torch.randint(0, len(train.classes), (batch,))
        yield model, inputs, labels


def train_side_by_side(
    runs: list[Training],
    folder: Path,
    *,
    workers: int,
    train: ImageArrays,
    test: ImageArrays,
    precision: str = "auto",
    progress: Progress | None = None,
    only_if_faster: bool = True,
) -> set[str]:
    """Train the runs not yet finished in ``folder``, ``workers`` at a time, largest first; return the
    keys of those trained. Nothing is done with fewer than two runs to train or workers, nor, when
    ``only_if_faster``, where that is slower than one run after the other (:func:`side_by_side_pays`)."""
    todo = [run for run in runs if not is_trained(run.recipe, folder)]
    workers = min(workers, len(todo))
    if workers < 2:
        return set()
    todo.sort(key=lambda run: -run_work(run, train))
    if only_if_faster and not side_by_side_pays(todo[0], train, workers):
        return set()
    if progress is not None:
        progress.console.print(f"training {len(todo)} runs side by side, {workers} at a time on one thread each")
    context = multiprocessing.get_context("fork")
    events = context.Queue()
    relay = ProgressRelay(progress, {index: run.label for index, run in enumerate(todo)})
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker,
        initargs=(os.getpid(), train, test, folder, precision, events),
    )  # fmt: skip
    try:
        pending = {pool.submit(_train, index, run.recipe, run.step_loss) for index, run in enumerate(todo)}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            relay.drain(events)
            for future in done:
                future.result()  # the worker's error, if any, raised here
    except BaseException:
        relay.drain(events)
        for pid in relay.workers:  # stop the other runs now; their finished epochs are checkpointed
            _kill(pid)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        relay.close()
    return {run.recipe.key() for run in todo}


class _ValuesComputed(TorchFunctionMode):
    """Counts the values of every tensor the torch functions called under it return."""

    def __init__(self) -> None:
        super().__init__()
        self.values = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outputs = out if isinstance(out, tuple | list) else (out,)
        self.values += sum(t.numel() for t in outputs if isinstance(t, torch.Tensor))
        return out


def run_work(run: Training, train: ImageArrays) -> int:
    """How much a run computes, for ordering runs by it: the values its objective computes on a batch of two
    images, times its training images and epochs. Unlike a parameter count, this sees that a convolution over
    a 32×32 map computes more per weight than a linear layer, that a residual net adds its shortcuts where its
    plain twin of the same weights does not, and that an adversarial objective runs the model more than once."""
    with _trial(run, train, 2) as (model, inputs, labels), _ValuesComputed() as counted:
        run.step_loss(model, inputs, labels)
    images = min(run.recipe.train_subset or len(train), len(train))
    return counted.values * images * run.recipe.train.epochs


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


# --- in the workers ---------------------------------------------------------------------------------------

_worker: dict[str, Any] = {}


PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies (Linux)


def _start_worker(
    parent: int, train: ImageArrays, test: ImageArrays, folder: Path, precision: str, events: Any
) -> None:
    # A parent that is killed (even by SIGKILL) takes its workers with it, rather than leave them training on.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before that took effect
        os._exit(1)
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    _worker.update(train=train, test=test, folder=folder, precision=precision, events=events)
    events.put(("worker", os.getpid()))


def _train(index: int, recipe: ClassifierRecipe, step_loss: StepLoss) -> None:
    obtain_classifier(
        recipe, _worker["folder"], torch.device("cpu"), _worker["train"], _worker["test"],
        execution=Execution(precision=_worker["precision"]), progress=RelayedProgress(_worker["events"], index),
        step_loss=step_loss,
    )  # fmt: skip
