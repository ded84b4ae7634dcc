"""Work spread over a Ray cluster: a study's runs, an audit's sections, one task each, the data through the
object store, the results back to the driver.

A task asks for what it computes on (one GPU where the study runs on CUDA, else one CPU) and runs on one
thread, so that it computes, bit for bit, what one thread computes locally. What tasks read (the training and
evaluation splits, a model and its images) is put into Ray's object store once and every task reads it from
there, so the workers need no shared filesystem. A training task trains into a folder of its own and returns
the finished checkpoint's bytes, which the driver writes into the model folder, where
:func:`~dlapps.train.obtain_classifier` finds it as it finds any run trained before; other tasks relay the
records they find to the driver's cache. A driver killed mid-study resumes from them. A task whose worker or
node is lost runs again (Ray's retries); one that fails for good (a worker out of memory) is reported once the
others have finished and been kept.
"""

from __future__ import annotations

import logging
import queue
import socket
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from rich.progress import Progress

from dlapps.data import ImageArrays
from dlapps.errors import ClusterError, DlappsError, first_line
from dlapps.models.factory import file_modules
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
        notices = logging.getLogger("ray")  # what Ray says as it starts is not the user's business
        level = notices.level
        notices.setLevel(logging.ERROR)
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False, include_dashboard=False)
        except ConnectionError:
            raise ClusterError(
                f"no Ray cluster found at --ray-address {address}; `ray start --head` starts one on this node "
                "(`ray start --address ...` joins it to one), or leave out --ray-address to start one for this run"
            ) from None
        finally:
            notices.setLevel(level)
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


class RayTask(NamedTuple):
    """One task: its label (for the progress display and errors) and the arguments its function takes before
    its :class:`TaskRelay` (values, or what :func:`put` put in the object store)."""

    label: str
    arguments: tuple[Any, ...]


class TaskRelay:
    """What a task sends its driver while it runs: progress (a stand-in for rich's ``Progress``) and the records it
    finds on the way, for the driver's cache."""

    def __init__(self, events: Any, index: int) -> None:
        self.events, self.index = events, index
        self.progress = RelayedProgress(events, index)

    def record(self, key: str, record: Any) -> None:
        self.events.put(("record", self.index, key, record))


def put(value: Any) -> Any:
    """``value`` in the object store, once, for every task to read. Model files a user's model came from travel
    with it, since other machines cannot import them by name."""
    ray = _ray()
    for module in file_modules():
        ray.cloudpickle.register_pickle_by_value(module)
    return ray.put(value)


def run_tasks(
    function: Callable[..., Any],
    tasks: list[RayTask],
    *,
    device: torch.device,
    noun: str,
    on_result: Callable[[int, Any], None],
    on_record: Callable[[int, str, Any], None] | None = None,
    progress: Progress | None = None,
) -> None:
    """``function(*task.arguments, relay=TaskRelay)`` for each task, on the Ray cluster :func:`connect` joined, on
    one thread, with the resources a run on ``device`` asks for (one GPU on CUDA, else one CPU). The driver hands
    each result to ``on_result(index, result)`` as it arrives, and each record a task relays to ``on_record``.
    A task whose worker or node is lost runs again; one that failed is raised once the others are done: its
    own error as it is, a lost worker as a :class:`ClusterError` naming the ``noun`` ("run")."""
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    events = _Events(ray.remote(_EventBuffer).options(num_cpus=0, scheduling_strategy=here).remote())
    relay = ProgressRelay(progress, {index: task.label for index, task in enumerate(tasks)}, on_record)
    resources = {"num_gpus": 1} if device.type == "cuda" else {"num_cpus": 1}
    remote = ray.remote(_in_worker).options(max_retries=RETRIES, retry_exceptions=False, **resources)
    pending = {remote.remote(function, index, events, *task.arguments): index for index, task in enumerate(tasks)}
    overall = None if progress is None else progress.add_task("Ray", total=len(tasks))
    failed: list[tuple[str, Exception]] = []
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
            relay.drain(events)
            for ref in done:
                index = pending.pop(ref)
                relay.finish(index)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failed.append((tasks[index].label, exc))
                    continue
                on_result(index, result)
            if progress is not None:
                finished = len(tasks) - len(pending)
                left = len(pending) - len(relay.tasks)
                description = f"Ray: {finished} {noun}s done, {len(relay.tasks)} running, {left} waiting"
                progress.update(overall, completed=finished, description=description)
        relay.drain(events)  # what the last tasks relayed (each waited for its events to be taken)
    except BaseException:
        for ref in pending:  # the driver stops: so do its tasks (what they finished is kept)
            ray.cancel(ref, force=True)
        raise
    finally:
        relay.close()
        if progress is not None:
            progress.remove_task(overall)
        ray.kill(events.buffer)
    if failed:
        _raise_failure(*failed[0], noun, kept=f"{len(tasks) - len(failed)} of the {len(tasks)} {noun}s")


def _in_worker(function: Callable[..., Any], index: int, events: Any, *arguments: Any) -> Any:
    """A task in a Ray worker, on one thread: the very computation one thread does locally."""
    torch.set_num_threads(1)
    try:
        return function(*arguments, relay=TaskRelay(events, index))
    finally:
        events.flush()


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
    failed is raised once the others are done (see :func:`run_tasks`)."""
    todo = sorted((run for run in runs if not is_trained(run.recipe, folder)), key=lambda run: -run_work(run, train))
    if not todo:
        return set()
    data = put(train), put(test)
    tasks = [RayTask(run.label, (run.recipe, run.step_loss, *data, _partial(run.recipe, folder), device.type,
                                 execution)) for run in todo]  # fmt: skip

    def write(index: int, checkpoint: bytes) -> None:
        write_atomically(checkpoint_path(todo[index].recipe, folder), lambda tmp: tmp.write_bytes(checkpoint),
                         "the checkpoint")  # fmt: skip

    run_tasks(_train_run, tasks, device=device, noun="run", on_result=write, progress=progress)
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
        self.buffer, self.taken, self.last_put = buffer, deque(), None

    def put(self, event: Any) -> None:
        self.last_put = self.buffer.put.remote(event)

    def flush(self) -> None:
        """Wait until every event put is in the buffer (an actor runs one caller's calls in order)."""
        if self.last_put is not None:
            _ray().get(self.last_put)

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


def _raise_failure(label: str, exc: Exception, noun: str, kept: str) -> None:
    ray = _ray()
    if isinstance(exc, ray.exceptions.RayTaskError):
        if isinstance(exc.cause, DlappsError):
            raise exc.cause  # the task's own error (a diverged training), as it is raised locally
        raise exc  # a bug: with its traceback from the worker
    raise ClusterError(f"{noun} {label} failed on the Ray cluster: {first_line(exc)} ({kept} finished and are kept)")


def _train_run(
    recipe: ClassifierRecipe,
    step_loss: StepLoss,
    train: ImageArrays,
    test: ImageArrays,
    partial: bytes | None,
    device_type: str,
    execution: Execution,
    *,
    relay: TaskRelay,
) -> bytes:
    """In a Ray worker: train the run as :func:`obtain_classifier` does, in a folder of its own (from the part
    trained before, if any); return its checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint_path(recipe, Path(tmp))
        if partial is not None:
            path.write_bytes(partial)
        obtain_classifier(
            recipe, Path(tmp), torch.device(device_type), train, test, execution=execution,
            progress=relay.progress, step_loss=step_loss,
        )  # fmt: skip
        return path.read_bytes()
