"""What Ray costs where there is nothing to gain: a study trained, or models audited, locally and on a Ray instance
on the same machine.

    DLAPPS_DATA=../shared/data python benchmarks/ray_overhead.py --study residual-mlp --profile quick
    DLAPPS_DATA=../shared/data python benchmarks/ray_overhead.py --audit resnet20_cifar10 small_cnn --data cifar10

Runs ``dlapps run <study>`` from empty output folders, in one go: ``--executor local`` as chosen by default
(side by side where a few steps measure it faster), ``--workers <cores>`` (forked workers side by side, one
thread each: the local twin of Ray's one-thread tasks), and ``--executor ray`` without an address (a Ray
instance started on this machine, as many tasks at once as it has cores). The setups take turns,
``--repeats`` times, and the fastest of each counts, so that a slow spell of the machine weighs on all of
them alike. Each command's wall time (Python, torch and Ray's start included) and the study's own; whether
the Ray runs are those of the forked workers, bit for bit. Writes
benchmarks/results/ray_overhead-<study>-<profile>-cpu.json and prints a table. Run by hand, not in CI.

With ``--audit``, ``dlapps audit`` of those models (a comparison where there are several) locally (as chosen by
default, and on one thread: ``OMP_NUM_THREADS=1``) and with ``--executor ray`` (a task per section and model,
one thread each), and whether the results of Ray's are those of one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import write_result
from safetensors.torch import load_file

from dlapps.experiments.audit_comparison import model_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="residual-mlp")
    parser.add_argument("--audit", nargs="+", metavar="MODEL", help="audit these models instead of running a study")
    parser.add_argument("--data", default="cifar10", help="the audited dataset")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("extra", nargs="*", help="further `dlapps run` (or `audit`) arguments, after --")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    setups = {"local (default)": []}  # the twin of Ray's one-thread tasks last but one
    setups |= {"local, one thread": ["OMP_NUM_THREADS=1"]} if args.audit else {  # NAME=value: its environment
        f"local, {cores} forked workers": ["--workers", str(cores)]}  # fmt: skip
    setups |= {"ray (started here)": ["--executor", "ray"]}
    walls: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for index, (name, options) in enumerate(setups.items()):
                out = Path(tmp) / f"{repeat}-{index}"
                what = (["audit", *(f"--model={m}" for m in args.audit), "--data", args.data] if args.audit
                        else ["run", args.study])  # fmt: skip
                variables, words = _environment(options)
                command = [sys.executable, "-m", "dlapps", *what, "--profile", args.profile, "--out", str(out / "study"),
                           "--device", "cpu", "--no-progress", *words, *args.extra]  # fmt: skip
                env = os.environ | variables
                started = time.perf_counter()
                subprocess.run(command, check=True, env=env)
                wall = time.perf_counter() - started
                study = json.loads((out / "study" / "results.json").read_text())["wall_seconds"]
                walls[name].append((wall, study))
                found[name] = _audits(out / "study", args.audit) if args.audit else _models(out / "models")
    rows = [{"setup": name, "command": options, "wall_seconds": min(walls[name])[0],
             "study_seconds": min(walls[name])[1], "all_wall_seconds": [w for w, _ in walls[name]]}
            for name, options in setups.items()]  # fmt: skip
    reference, ray = found[rows[-2]["setup"]], found["ray (started here)"]
    same = reference.keys() == ray.keys() and all(
        all(_equal(reference[run][name], ray[run][name]) for name in reference[run]) for run in reference
    )
    default, before = rows[0]["wall_seconds"], rows[-2]["wall_seconds"]
    print(f"{'setup':28s} {'wall s':>8s} {'study s':>8s} {'vs default':>10s} {'vs twin':>10s}")
    for row in rows:
        row["vs_default"], row["vs_twin"] = row["wall_seconds"] / default, row["wall_seconds"] / before
        print(f"{row['setup']:28s} {row['wall_seconds']:8.1f} {row['study_seconds']:8.1f} "
              f"{row['vs_default']:9.2f}x {row['vs_twin']:9.2f}x")  # fmt: skip
    what = "audits" if args.audit else "runs"
    print(f"Ray's {what} identical to those of {rows[-2]['setup']}: {same}")
    record = {"study": "audit" if args.audit else args.study, "profile": args.profile, what: len(ray),
              "repeats": args.repeats, "setups": rows, "identical": same}  # fmt: skip
    name = f"audit-{'-'.join(model_labels(tuple(args.audit)))}-{args.data}" if args.audit else args.study
    out = write_result(f"ray_overhead-{name}-{args.profile}", torch.device("cpu"), record)
    print(f"-> {out}")


def _environment(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """A setup's leading ``NAME=value`` words (as a shell reads them: the command's environment), and the rest."""
    count = next((i for i, word in enumerate(words) if "=" not in word or word.startswith("-")), len(words))
    return dict(word.split("=", 1) for word in words[:count]), words[count:]


def _models(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The checkpoints a study trained: each one's tensors (weights and optimizer state), by file."""
    return {path.name: load_file(path) for path in sorted(folder.glob("*.safetensors"))}


def _audits(folder: Path, models: list[str]) -> dict[str, dict[str, str]]:
    """Each model's audit sections as JSON text, by model folder (the audit's own folder for one model)."""
    folders = [path.parent for path in folder.glob("*/results.json")] if len(models) > 1 else [folder]
    sections = ("accuracy", "explanations", "ood", "corruptions", "robustness")
    return {path.name: {section: json.dumps(json.loads((path / "results.json").read_text())[section])
                        for section in sections} for path in folders}  # fmt: skip


def _equal(a: torch.Tensor | str, b: torch.Tensor | str) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


if __name__ == "__main__":
    main()
