"""Progress bars of runs trained in other processes (forked workers, Ray tasks), relayed to the parent's display,
and the records a run found on the way, relayed to the parent's cache.

A worker's :class:`RelayedProgress` stands in for rich's ``Progress`` in :func:`~dlapps.train.fit` and puts
events on a queue (a ``multiprocessing`` queue, or Ray's); the parent's :class:`ProgressRelay` drains the queue
into one bar per run in training, named by its label.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from rich.progress import Progress


class RelayedProgress:
    """The part of rich's ``Progress`` that training uses, sent to the parent at most every 0.2 s."""

    def __init__(self, events: Any, run: int) -> None:
        self.events, self.run, self.unsent, self.sent_at = events, run, 0.0, 0.0

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_: Any) -> int:
        self.events.put(("add", self.run, total, completed))
        return self.run

    def advance(self, task: int, advance: float = 1) -> None:
        self.unsent += advance
        if time.monotonic() - self.sent_at > 0.2:
            self.events.put(("advance", self.run, self.unsent))
            self.unsent, self.sent_at = 0.0, time.monotonic()

    def remove_task(self, task: int) -> None:
        self.events.put(("remove", self.run, None))


class ProgressRelay:
    """The parent's side: one bar per run in training, named by its label (a run started again after its worker
    was lost keeps one bar); the process ids of the workers that said who they are; the records a run found on
    the way, handed to ``keep`` (run, key, record)."""

    def __init__(
        self, progress: Progress | None, labels: dict[int, str], keep: Callable[[int, str, Any], None] | None = None
    ) -> None:
        self.progress, self.labels, self.keep = progress, labels, keep
        self.tasks: dict[int, Any] = {}
        self.workers: list[int] = []

    def drain(self, events: Any) -> None:
        while True:
            try:
                kind, *rest = events.get_nowait()
            except queue.Empty:
                return
            if kind == "worker":
                self.workers.append(rest[0])
            elif kind == "record" and self.keep is not None:
                self.keep(*rest)
            elif self.progress is not None:
                self._show(kind, *rest)

    def _show(self, kind: str, run: int, *values: Any) -> None:
        if kind == "add":
            total, completed = values
            if run in self.tasks:
                self.progress.remove_task(self.tasks.pop(run))
            self.tasks[run] = self.progress.add_task(self.labels[run], total=total, completed=completed)
        elif kind == "advance" and run in self.tasks:
            self.progress.advance(self.tasks[run], values[0])
        elif kind == "remove" and run in self.tasks:
            self.progress.remove_task(self.tasks.pop(run))

    def finish(self, run: int) -> None:
        """Take down the bar of a run that is over, even one whose worker died before it could say so."""
        if run in self.tasks:
            self.progress.remove_task(self.tasks.pop(run))

    def close(self) -> None:
        if self.progress is not None:
            for task in self.tasks.values():
                self.progress.remove_task(task)
        self.tasks.clear()
