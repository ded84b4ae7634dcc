"""What Ray costs where there is nothing to gain: a study trained locally and on a Ray instance on the same machine.

    DLAPPS_DATA=../shared/data python benchmarks/ray_overhead.py --study residual-mlp --profile quick

Runs ``dlapps run <study>`` from empty output folders, one after the other in one go: ``--executor local`` as
chosen by default (side by side where a few steps measure it faster), ``--workers <cores>`` (forked workers
side by side, one thread each: the local twin of Ray's one-thread tasks), and ``--executor ray`` without an
address (a Ray instance started on this machine, as many tasks at once as it has cores). Each command's wall
time (Python, torch and Ray's start included) and the study's own; whether the Ray runs are those of the
forked workers, bit for bit. Writes benchmarks/results/ray_overhead-<study>-<profile>-cpu.json and prints a
table. Run by hand, not in CI.
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
    parser.add_argument("extra", nargs="*", help="further `dlapps run` arguments, after --")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    setups = {"local (default)": [], f"local, {cores} forked workers": ["--workers", str(cores)],
              "ray (started here)": ["--executor", "ray"]}  # fmt: skip
    rows, models = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, options) in enumerate(setups.items()):
            out = Path(tmp) / str(index)
            command = [sys.executable, "-m", "dlapps", "run", args.study, "--profile", args.profile,
                       "--out", str(out / "study"), "--device", "cpu", "--no-progress", *options, *args.extra]  # fmt: skip
            started = time.perf_counter()
            subprocess.run(command, check=True)
            wall = time.perf_counter() - started
            study = json.loads((out / "study" / "results.json").read_text())["wall_seconds"]
            rows.append({"setup": name, "command": command[2:], "wall_seconds": wall, "study_seconds": study})
            models[name] = {path.name: load_file(path) for path in sorted((out / "models").glob("*.safetensors"))}
    forked, ray = models[f"local, {cores} forked workers"], models["ray (started here)"]
    same = forked.keys() == ray.keys() and all(
        all(torch.equal(forked[run][name], ray[run][name]) for name in forked[run]) for run in forked
    )
    base = rows[0]["wall_seconds"]
    print(f"{'setup':28s} {'wall s':>8s} {'study s':>8s} {'vs default':>10s}")
    for row in rows:
        row["vs_default"] = row["wall_seconds"] / base
        print(f"{row['setup']:28s} {row['wall_seconds']:8.1f} {row['study_seconds']:8.1f} {row['vs_default']:9.2f}x")
    print(f"Ray's runs identical to the forked workers' (weights and optimizer state): {same}")
    record = {"study": args.study, "profile": args.profile, "runs": len(ray), "setups": rows, "identical": same}
    out = write_result(f"ray_overhead-{args.study}-{args.profile}", torch.device("cpu"), record)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
