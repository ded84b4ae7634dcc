"""Train a study's runs on a Ray cluster: one task per run, the data through the object store, the checkpoints
back to the driver.

A run is the unit of work. Each becomes a task that asks for what it trains on (one GPU where the study runs
on CUDA, else one CPU) and trains on one thread, so that it is the very run, bit for bit, that one thread
trains locally. The training and evaluation splits are put into Ray's object store once and every task reads
them from there, so the workers need no shared filesystem. A task trains into a folder of its own and returns
the finished checkpoint's bytes, which the driver writes into the model folder, where
:func:`~dlapps.train.obtain_classifier` finds it as it finds any run trained before: a driver killed mid-study
resumes from them. A task whose worker or node is lost runs again (Ray's retries); a run that fails for good
(a worker out of memory) is reported once the other runs have finished and been kept.
"""

from __future__ import annotations

import queue
import socket
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from dlapps.data import ImageArrays
from dlapps.errors import ClusterError, DlappsError, first_line
from dlapps.report.io import write_atomically
from dlapps.train.config import Execution
from dlapps.train.recipes import ClassifierRecipe, checkpoint_path, obtain_classifier
from dlapps.train.relayed_progress import ProgressRelay, RelayedProgress
from dlapps.train.side_by_side import Training, is_trained, run_work
from dlapps.train.trainer import StepLoss

RETRIES = 3  # times a task runs again after its worker or node was lost (an error of its own is not retried)
ANSWER_SECONDS = 5.0  # how long a cluster's address has to answer


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError("--executor ray needs Ray: pip install 'dlapps[ray]'") from None
    return ray


def connect(address: str | None, device: torch.device) -> None:
    """Join the Ray cluster at ``address`` (``auto``: the one ``ray start`` started on this node; ``host:port`` or
    ``ray://host:port``), or start one on this machine when None; a second call keeps the first connection. A
    cluster that does not answer, or has no GPU for a run on CUDA, is one line."""
    ray = _ray()
    if not ray.is_initialized():
        if address not in (None, "auto"):
            _check_answers(address)
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False, include_dashboard=False)
        except ConnectionError:
            raise ClusterError(
                f"no Ray cluster found at --ray-address {address}; `ray start --head` starts one on this node "
                "(`ray start --address ...` joins it to one), or leave out --ray-address to start one for this run"
            ) from None
    if device.type == "cuda" and ray.cluster_resources().get("GPU", 0) < 1:
        raise ClusterError(
            f"the runs ask for CUDA but the Ray cluster at {address or 'this machine'} has no GPU; "
            "start its nodes where GPUs are (ray start detects them), or use --device cpu"
        )


def _check_answers(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"Ray address {address!r} must be auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=ANSWER_SECONDS).close()
    except OSError as exc:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one there with "
            "`ray start --head`, or leave out --ray-address to start one on this machine"
        ) from None


def train_on_ray(
    runs: list[Training],
    folder: Path,
    *,
    device: torch.device,
    train: ImageArrays,
    test: ImageArrays,
    execution: Execution,
    progress: Progress | None = None,
) -> set[str]:
    """Train the runs not yet finished in ``folder`` as tasks on the Ray cluster :func:`connect` joined, largest
    first; write each checkpoint into ``folder`` as it arrives; return the keys of the runs trained. A run that
    failed is raised once the others are done: its own error as it is, a lost worker as a :class:`ClusterError`."""
    ray = _ray()
    todo = sorted((run for run in runs if not is_trained(run.recipe, folder)), key=lambda run: -run_work(run, train))
    if not todo:
        return set()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    events = _Events(ray.remote(_EventBuffer).options(num_cpus=0, scheduling_strategy=here).remote())
    relay = ProgressRelay(progress, {index: run.label for index, run in enumerate(todo)})
    resources = {"num_gpus": 1} if device.type == "cuda" else {"num_cpus": 1}
    task = ray.remote(_train_run).options(max_retries=RETRIES, retry_exceptions=False, **resources)
    data = ray.put(train), ray.put(test)
    pending = {
        task.remote(index, run.recipe, run.step_loss, *data, _partial(run.recipe, folder), device.type, execution,
                    events): index
        for index, run in enumerate(todo)
    }  # fmt: skip
    overall = None if progress is None else progress.add_task("Ray", total=len(todo))
    failed: list[tuple[Training, Exception]] = []
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
            relay.drain(events)
            for ref in done:
                index = pending.pop(ref)
                relay.finish(index)
                run = todo[index]
                try:
                    checkpoint = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failed.append((run, exc))
                    continue
                write_atomically(checkpoint_path(run.recipe, folder), lambda tmp, b=checkpoint: tmp.write_bytes(b),
                                 "the checkpoint")  # fmt: skip
            if progress is not None:
                finished = len(todo) - len(pending)
                left = len(pending) - len(relay.tasks)
                description = f"Ray: {finished} runs done, {len(relay.tasks)} running, {left} waiting"
                progress.update(overall, completed=finished, description=description)
    except BaseException:
        for ref in pending:  # the driver stops: so do its runs (finished ones are in the folder)
            ray.cancel(ref, force=True)
        raise
    finally:
        relay.close()
        if progress is not None:
            progress.remove_task(overall)
        ray.kill(events.buffer)
    if failed:
        _raise_failure(*failed[0], kept=f"{len(todo) - len(failed)} of the {len(todo)} runs")
    return {run.recipe.key() for run in todo}


class _EventBuffer:
    """An actor on the driver's node (lost only with the driver) that holds the tasks' progress events."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def put(self, event: Any) -> None:
        self.events.append(event)

    def take(self) -> list[Any]:
        taken, self.events = self.events, []
        return taken


class _Events:
    """The queue :class:`RelayedProgress` and :class:`ProgressRelay` take, over an :class:`_EventBuffer`. A task
    puts without waiting for the put to be done: a task that waits on Ray gives its CPU back to the scheduler,
    which would start another run on it (Ray's ``Queue`` waits, and trains three runs at once on two CPUs)."""

    def __init__(self, buffer: Any) -> None:
        self.buffer, self.taken = buffer, deque()

    def put(self, event: Any) -> None:
        self.buffer.put.remote(event)

    def get_nowait(self) -> Any:
        if not self.taken:
            self.taken.extend(_ray().get(self.buffer.take.remote()))
        if not self.taken:
            raise queue.Empty
        return self.taken.popleft()

    def __reduce__(self) -> tuple[Any, ...]:  # to a task: the actor's handle, not what the driver has taken
        return _Events, (self.buffer,)


def _partial(recipe: ClassifierRecipe, folder: Path) -> bytes | None:
    """The checkpoint of a run trained part of the way here (a local run stopped), for its task to resume."""
    path = checkpoint_path(recipe, folder)
    return path.read_bytes() if path.is_file() else None


def _raise_failure(run: Training, exc: Exception, kept: str) -> None:
    ray = _ray()
    if isinstance(exc, ray.exceptions.RayTaskError):
        if isinstance(exc.cause, DlappsError):
            raise exc.cause  # the run's own error (a diverged training), as a local run raises it
        raise exc  # a bug: with its traceback from the worker
    raise ClusterError(f"run {run.label} failed on the Ray cluster: {first_line(exc)} ({kept} finished and are kept)")


def _train_run(
    index: int,
    recipe: ClassifierRecipe,
    step_loss: StepLoss,
    train: ImageArrays,
    test: ImageArrays,
    partial: bytes | None,
    device_type: str,
    execution: Execution,
    events: Any,
) -> bytes:
    """In a Ray worker: train the run on one thread, as :func:`obtain_classifier` does, in a folder of its own;
    return its checkpoint."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint_path(recipe, Path(tmp))
        if partial is not None:
            path.write_bytes(partial)
        obtain_classifier(
            recipe, Path(tmp), torch.device(device_type), train, test, execution=execution,
            progress=RelayedProgress(events, index), step_loss=step_loss,
        )  # fmt: skip
        return path.read_bytes()
