"""``dlapps reproduce``: every study of the course write-up, in order, into one folder and one report.

The studies are those registered with an ``exercise`` of the write-up, in the write-up's order. They share
one model folder (the OOD and attack studies use the same CIFAR models, ``cam`` explains the network
``residual-cnn`` trained). A study whose ``results.json`` exists with the same configuration is not run
again; an interrupted one restarts from its cached runs and checkpoints. Result files are written
atomically, so a kill at any moment leaves either the old file or the new one. The data archives the pending
studies read are decoded up front, several at once.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from dlapps.config import to_dict
from dlapps.data import resolve_data_root
from dlapps.data.downloads import ensure
from dlapps.data.sources import preload_archives
from dlapps.errors import ConfigError
from dlapps.experiments.base import STUDIES, RunContext, Study, run_study
from dlapps.report.io import read_json, with_non_finite
from dlapps.report.progress import make_progress
from dlapps.report.study import StudyOutcome, write_combined_report, write_report


def writeup_studies() -> list[Study]:
    """The studies that reproduce an exercise of the write-up, in the order a reader meets them."""
    return sorted((s for s in STUDIES.values() if s.exercise), key=lambda s: s.exercise[:2])


def _finished(out: Path, config: Any) -> dict[str, Any] | None:
    """The study's results when they exist for this very configuration (unreadable JSON counts as not done), with
    the numbers that are not finite back in place of their nulls, as the study's run had them."""
    path = out / "results.json"
    try:
        results = with_non_finite(read_json(path)) if path.is_file() else None
    except ValueError:
        return None
    return results if isinstance(results, dict) and results.get("config") == to_dict(config) else None


def reproduce(
    base: RunContext, profile: str, only: tuple[str, ...] = (), overrides: dict[str, list[str]] | None = None
) -> list[StudyOutcome]:
    """Run (or reuse) each study under ``base.out/<study>``, sharing the models in ``base.models_dir``
    (``dlapps reproduce``: ``<out>/models``); write the combined report; return outcomes."""
    studies = writeup_studies()
    unknown = sorted(set(only) - {s.name for s in studies})
    if unknown:
        raise ConfigError(f"unknown study {unknown[0]!r} for --only; studies: {', '.join(s.name for s in studies)}")
    chosen = [s for s in studies if not only or s.name in only]
    configs = {s.name: s.config(profile, (overrides or {}).get(s.name, [])) for s in chosen}  # fail fast
    root = resolve_data_root(base.data_root)
    pending = [s for s in chosen if _finished(base.out / s.name, configs[s.name]) is None]
    needs = [need for s in pending for need in s.needs(configs[s.name], root, base.download)]
    ensure(needs, root, base.download, progress=base.show_progress)  # everything missing at once, before hours of work
    preload_archives(path for need in needs for path in need.paths)
    models = base.models_dir
    outcomes = []
    with make_progress(base.show_progress) as progress:
        overall = progress.add_task("reproduce", total=len(chosen))
        for study in chosen:
            out, config, started = base.out / study.name, configs[study.name], time.perf_counter()
            progress.update(overall, description=f"reproduce: {study.name}")
            results = _finished(out, config)
            status = "cached" if results is not None else "ran"
            if results is None:
                command = f"dlapps run {study.name} --profile {profile} --out {out} --models-dir {models}"
                ctx = replace(base, out=out, models_dir=models, command=command, shared_progress=progress)
                results = run_study(study, config, ctx)
            else:  # rendered again: the report says what this version concludes from the cached results
                write_report(study, config, results, out)
            seconds = time.perf_counter() - started
            outcomes.append(StudyOutcome(study, config, status, seconds, out, results, study.compare(config, results)))
            progress.console.print(f"{study.name}: {status} in {seconds:.0f} s")
            progress.advance(overall)
    write_combined_report(base.out, profile, outcomes)
    return outcomes
