"""``dlapps reproduce``: every study of the course write-up, in order, into one folder and one report.

Studies share one model folder (the OOD and attack studies use the same CIFAR models, ``cam`` explains the
network ``residual-cnn`` trained). A study whose ``results.json`` exists with the same configuration is
not run again; an interrupted one restarts from its cached runs and checkpoints. Result files are written
atomically, so a kill at any moment leaves either the old file or the new one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlapps.config import to_dict
from dlapps.errors import ConfigError
from dlapps.experiments.base import RunContext, environment, make_progress
from dlapps.report.comparison import SECTION_TITLE, Comparison, comparison_table, to_records
from dlapps.report.html import markdown_to_html
from dlapps.report.io import read_json, write_json, write_text
from dlapps.report.markdown import table

# The write-up's exercises, in the order a reader meets them, with the study that reproduces each.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("residual-mlp", "Lab 1, exercises 1.1–1.2: residual connections in deep MLPs"),
    ("residual-cnn", "Lab 1, exercise 1.3: skip connections in CNNs"),
    ("cam", "Lab 1, exercise 2.3: class activation maps"),
    ("ood", "Lab 4, exercise 1: out-of-distribution detection"),
    ("fgsm", "Lab 4, exercise 2.1: FGSM and iterative FGSM"),
    ("adv-train", "Lab 4, exercise 2.2: adversarial training"),
    ("targeted", "Lab 4, exercise 3.3: targeted attacks"),
)


@dataclass(frozen=True)
class StudyOutcome:
    name: str
    title: str
    status: str  # "ran" or "cached"
    seconds: float  # this invocation's (about 0 when cached)
    out: Path
    wall_seconds: float  # the study's own run, from its results.json
    comparisons: list[Comparison] = field(default_factory=list)


def _is_done(out: Path, config: Any) -> bool:
    path = out / "results.json"
    if not path.is_file():
        return False
    try:
        return read_json(path).get("config") == to_dict(config)
    except ValueError:  # unreadable JSON counts as not done; it is rewritten
        return False


def reproduce(
    base: RunContext, profile: str, only: tuple[str, ...] = (), overrides: dict[str, list[str]] | None = None
) -> list[StudyOutcome]:
    """Run (or reuse) each study under ``base.out/<study>``; write the combined report; return outcomes."""
    from dlapps.experiments import STUDIES

    sections = [(name, title) for name, title in SECTIONS if name in STUDIES]
    unknown = sorted(set(only) - {name for name, _ in sections})
    if unknown:
        raise ConfigError(f"unknown study {unknown[0]!r} for --only; studies: {', '.join(n for n, _ in sections)}")
    chosen = [(n, t) for n, t in sections if not only or n in only]
    configs = {n: STUDIES[n].config(profile, (overrides or {}).get(n, [])) for n, _ in chosen}  # fail fast
    models = base.model_dir if base.models_dir else base.out / "models"
    outcomes = []
    with make_progress(base.show_progress) as progress:
        overall = progress.add_task("reproduce", total=len(chosen))
        for name, title in chosen:
            out = base.out / name
            started = time.perf_counter()
            progress.update(overall, description=f"reproduce: {name}")
            if _is_done(out, configs[name]):
                status = "cached"
            else:
                command = f"dlapps run {name} --profile {profile} --out {out} --models-dir {models}"
                ctx = RunContext(
                    out=out, device=base.device, data_root=base.data_root, models_dir=models, download=base.download,
                    show_progress=base.show_progress, command=command, shared_progress=progress, compile=base.compile,
                )  # fmt: skip
                STUDIES[name].run(configs[name], ctx)
                status = "ran"
            results = read_json(out / "results.json")
            comparisons = STUDIES[name].compare(configs[name], results)
            outcomes.append(
                StudyOutcome(
                    name, title, status, time.perf_counter() - started, out, results["wall_seconds"], comparisons
                )
            )
            progress.console.print(f"{name}: {status} in {outcomes[-1].seconds:.0f} s")
            progress.advance(overall)
    write_combined_report(base.out, profile, outcomes)
    return outcomes


def _demote(markdown_text: str, prefix: str) -> str:
    """The study's own title and comparison section dropped (the combined report rebuilds it), headings one
    level down, image links relative to the combined report."""
    text = re.sub(r"\A# [^\n]*\n", "", markdown_text.lstrip())
    text = re.sub(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", "", text, flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)
    return re.sub(r"!\[([^\]]*)\]\((?!https?:|data:)([^)]+)\)", rf"![\1]({prefix}/\2)", text)


def write_combined_report(out: Path, profile: str, outcomes: list[StudyOutcome]) -> None:
    """``report.md`` and a self-contained ``report.html`` built from every study's own report."""
    env = environment()
    rows = []
    parts = []
    for outcome in outcomes:
        rows.append([outcome.title, f"`{outcome.name}`", outcome.status, f"{outcome.wall_seconds:.0f}"])
        report = (outcome.out / "report.md").read_text(encoding="utf-8")
        parts += [f"## {outcome.title}", ""]
        if outcome.comparisons:
            parts += ["#" + SECTION_TITLE, "", comparison_table(outcome.comparisons)]
        parts += [_demote(report, outcome.name), ""]
    glance = [(o.name, c) for o in outcomes for c in o.comparisons]
    claims = [c for _, c in glance if c.is_claim]
    text = "\n".join(
        [
            f"# dlapps: the deep-learning-applications study, reproduced ({profile} profile)",
            "",
            f"dlapps {env['dlapps']}, torch {env['torch']}, Python {env['python']}, {env['platform']}, "
            f"CUDA: {env['cuda'] or 'none'}; {env['date']}.",
            "",
            f"Rerun everything: `dlapps reproduce --profile {profile} --out {out}`. Each section ends with the "
            "command that reruns its study alone.",
            "",
            table(["exercise", "study", "this run", "study wall time (s)"], rows),
            "## At a glance: this run against the write-up and the literature",
            "",
            f"{sum(c.holds for c in claims)} of {len(claims)} findings hold here. Each section repeats its rows "
            "next to its own tables and figures.",
            "",
            comparison_table([c for _, c in glance], first=("study", [f"`{name}`" for name, _ in glance])),
            *parts,
        ]
    )
    write_text(out / "report.md", text)
    write_text(out / "report.html", markdown_to_html(text, out, title="dlapps reproduction"))
    write_json(out / "summary.json", {"profile": profile, "environment": env, "studies": [
        {"name": o.name, "status": o.status, "seconds": o.seconds, "comparisons": to_records(o.comparisons)}
        for o in outcomes]})  # fmt: skip
