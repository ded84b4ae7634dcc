"""Wall time of the whole study, per study: ``dlapps reproduce`` at a profile, from an empty output folder.

    DLAPPS_DATA=../shared/data python benchmarks/reproduce_time.py --profile full --out /tmp/reproduce-full

A folder that already holds results is reused study by study (so an interrupted benchmark can be finished),
and the table marks those studies as cached. Writes
benchmarks/results/reproduce_time-<profile>-<precision>-<device>.json and prints a table. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import write_result

from dlapps.train import resolve_device
from dlapps.train.device import resolve_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="training precision: auto, fp32 or bf16")
    parser.add_argument("extra", nargs="*", help="further `dlapps reproduce` arguments, after --")
    args = parser.parse_args()
    command = [str(Path(sys.executable).with_name("dlapps")), "reproduce", "--profile", args.profile, "--out", str(args.out),
               "--device", args.device, "--precision", args.precision, "--no-progress", *args.extra]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    summary = json.loads((args.out / "summary.json").read_text())
    studies = [{k: s[k] for k in ("name", "status", "seconds")} for s in summary["studies"]]
    print(f"{'study':14s} {'status':8s} {'seconds':>8s}")
    for s in studies:
        print(f"{s['name']:14s} {s['status']:8s} {s['seconds']:8.0f}")
    print(f"{'total':14s} {'':8s} {wall:8.0f}")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    record = {"training_precision": precision, "wall_seconds": wall, "studies": studies}
    out = write_result(f"reproduce_time-{args.profile}-{precision}", device, record)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
