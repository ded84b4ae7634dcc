"""Split a data root into parts of at most 64 MiB, to copy to a GPU machine that cannot read it.

    python benchmarks/carry_data.py --data ../shared/data --out .carry --mib 56

writes .carry/part0, .carry/part1, ... (git-ignored). Copy the parts to the GPU machine's checkout (all at once,
or one at a time) and run ``bash benchmarks/gpu_check.sh assemble`` after each: the parts are gathered into
.gpu-data (ignored) and the CIFAR-10 training split is put back together once every part has arrived.
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import numpy as np

WHOLE = ("cifar10_test.npz", "cifar100_test.npz", "mnist_train.npz", "mnist_test.npz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(".carry"))
    parser.add_argument("--mib", type=float, default=56.0, help="size of each part")
    args = parser.parse_args()
    budget = args.mib * 2**20
    shutil.rmtree(args.out, ignore_errors=True)
    files = [args.data / name for name in WHOLE] + sorted((args.data / "weights").glob("*"))
    train = np.load(args.data / "cifar10_train.npz")
    images, labels, classes = train["images"], train["labels"], train["classes"]
    sample = io.BytesIO()
    np.savez_compressed(sample, images=images[:2000])
    per_image = 1.05 * sample.getbuffer().nbytes / 2000  # compressed bytes per image, with a margin
    parts: list[list[object]] = [[]]
    used = 0.0
    for path in files:
        size = path.stat().st_size
        if used + size > budget:
            parts.append([])
            used = 0.0
        parts[-1].append(path)
        used += size
    start = 0
    while start < len(images):
        room = int((budget - used) / per_image)
        if room < 1000:
            parts.append([])
            used, room = 0.0, int(budget / per_image)
        stop = min(len(images), start + room)
        parts[-1].append((start, stop))
        used += (stop - start) * per_image
        start = stop
    chunks = sum(isinstance(item, tuple) for part in parts for item in part)
    for k, part in enumerate(parts):
        folder = args.out / f"part{k}"
        (folder / "weights").mkdir(parents=True)
        for item in part:
            if isinstance(item, tuple):
                a, b = item
                np.savez_compressed(folder / f"cifar10_train.{a:05d}-{b:05d}-of-{chunks}.npz",
                                    images=images[a:b], labels=labels[a:b], classes=classes)  # fmt: skip
            else:
                shutil.copy(item, folder / ("weights" if item.parent.name == "weights" else "") / item.name)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
        print(f"{folder}: {size:.1f} MiB")


if __name__ == "__main__":
    main()
