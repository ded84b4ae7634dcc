"""What Ray costs where there is nothing to gain: a study trained locally and on a Ray instance on the same machine.

    DLAPPS_DATA=../shared/data python benchmarks/ray_overhead.py --study residual-mlp --profile quick

Runs ``dlapps run <study>`` from empty output folders, in one go: ``--executor local`` as chosen by default
(side by side where a few steps measure it faster), ``--workers <cores>`` (forked workers side by side, one
thread each: the local twin of Ray's one-thread tasks), and ``--executor ray`` without an address (a Ray
instance started on this machine, as many tasks at once as it has cores). The setups take turns,
``--repeats`` times, and the fastest of each counts, so that a slow spell of the machine weighs on all of
them alike. Each command's wall time (Python, torch and Ray's start included) and the study's own; whether
the Ray runs are those of the forked workers, bit for bit. Writes
benchmarks/results/ray_overhead-<study>-<profile>-cpu.json and prints a table. Run by hand, not in CI.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="residual-mlp")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("extra", nargs="*", help="further `dlapps run` arguments, after --")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    setups = {"local (default)": [], f"local, {cores} forked workers": ["--workers", str(cores)],
              "ray (started here)": ["--executor", "ray"]}  # fmt: skip
    walls: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for index, (name, options) in enumerate(setups.items()):
                out = Path(tmp) / f"{repeat}-{index}"
                command = [sys.executable, "-m", "dlapps", "run", args.study, "--profile", args.profile,
                           "--out", str(out / "study"), "--device", "cpu", "--no-progress", *options, *args.extra]  # fmt: skip
                started = time.perf_counter()
                subprocess.run(command, check=True)
                wall = time.perf_counter() - started
                study = json.loads((out / "study" / "results.json").read_text())["wall_seconds"]
                walls[name].append((wall, study))
                models[name] = {path.name: load_file(path) for path in sorted((out / "models").glob("*.safetensors"))}
    rows = [{"setup": name, "command": options, "wall_seconds": min(walls[name])[0],
             "study_seconds": min(walls[name])[1], "all_wall_seconds": [w for w, _ in walls[name]]}
            for name, options in setups.items()]  # fmt: skip
    forked, ray = models[f"local, {cores} forked workers"], models["ray (started here)"]
    same = forked.keys() == ray.keys() and all(
        all(torch.equal(forked[run][name], ray[run][name]) for name in forked[run]) for run in forked
    )
    default, forked_wall = rows[0]["wall_seconds"], rows[1]["wall_seconds"]
    print(f"{'setup':28s} {'wall s':>8s} {'study s':>8s} {'vs default':>10s} {'vs forked':>10s}")
    for row in rows:
        row["vs_default"], row["vs_forked"] = row["wall_seconds"] / default, row["wall_seconds"] / forked_wall
        print(f"{row['setup']:28s} {row['wall_seconds']:8.1f} {row['study_seconds']:8.1f} "
              f"{row['vs_default']:9.2f}x {row['vs_forked']:9.2f}x")  # fmt: skip
    print(f"Ray's runs identical to the forked workers' (weights and optimizer state): {same}")
    record = {"study": args.study, "profile": args.profile, "runs": len(ray), "repeats": args.repeats,
              "setups": rows, "identical": same}  # fmt: skip
    out = write_result(f"ray_overhead-{args.study}-{args.profile}", torch.device("cpu"), record)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
