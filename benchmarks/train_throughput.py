"""Training throughput and time-to-accuracy: dlapps' trainer vs a seed-style DataLoader loop.

Same model (CIFAR ResNet-20, or ``--model small_cnn``), data, optimiser, epochs and seeds in one run. The
seed-style loop is the course's: a torch DataLoader over per-sample torchvision transforms, fp32, batch 128. dlapps keeps uint8
data on the device, augments whole batches and trains as its studies do (channels-last weights where they are
faster, fused optimizer kernels); its rows are fp32 eager, fp32 compiled (torch.compile, static shapes) and,
where the device computes bf16 natively or --bf16 asks for it, bf16 autocast, eager and compiled; ``--rows``
picks some of them. Throughput counts training steps only (evaluation is timed apart in all);
time-to-accuracy is the training time until the test accuracy first reaches the seed-style loop's final one.

    DLAPPS_DATA=../shared/data python benchmarks/train_throughput.py --train-size 10000 --epochs 3 --seeds 2

Writes benchmarks/results/train_throughput-<model>-<device>.json and prints a table. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
import torch.nn.functional as F
from _common import write_result
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from dlapps.data import ResidentLoader, get_dataset, load_arrays
from dlapps.models import create_model
from dlapps.train import TrainConfig, evaluate, fit, resolve_device
from dlapps.train.device import native_bf16


class SeedStyleCifar(Dataset):
    """Per-sample transforms from uint8 CHW tensors, as a torchvision-dataset training script does."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
        self.transform = v2.Compose(
            [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_style(model, train, test_loader, epochs: int, device) -> list[tuple[float, float]]:
    """(cumulative training seconds, test accuracy) after each epoch."""
    loader = DataLoader(SeedStyleCifar(train.images, train.labels), batch_size=128, shuffle=True, num_workers=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    curve, train_seconds = [], 0.0
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        _sync(device)
        train_seconds += time.perf_counter() - started
        curve.append((train_seconds, evaluate(model, test_loader)[1]))
    return curve


def dlapps_loop(
    model, train, test_loader, epochs, device, batch_size, compile_, precision
) -> list[tuple[float, float]]:
    loader = ResidentLoader(train, batch_size=batch_size, shuffle=True, crop_padding=4, hflip=True, device=device)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="sgd", lr=0.05, weight_decay=5e-4)
    history = fit(model, loader, test_loader, config, compile=compile_, precision=precision)
    seconds = itertools.accumulate(h.train_seconds for h in history)
    return [(s, h.test_acc) for s, h in zip(seconds, history, strict=True)]


def time_to(curve: list[tuple[float, float]], accuracy: float) -> float | None:
    return next((seconds for seconds, acc in curve if acc >= accuracy), None)


def variants(device: torch.device, bf16: bool) -> dict[str, tuple[str, bool] | None]:
    """Row name -> (precision, compile) of a dlapps run; None: the seed-style loop."""
    rows: dict[str, tuple[str, bool] | None] = {"seed-style": None, "dlapps fp32": ("fp32", False),
                                                "dlapps fp32 compiled": ("fp32", True)}  # fmt: skip
    if bf16 or native_bf16(device):
        rows |= {"dlapps bf16": ("bf16", False), "dlapps bf16 compiled": ("bf16", True)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1, help="runs of every row, from seeds 0, 1, ...")
    parser.add_argument("--model", default="resnet20", help="resnet20 or small_cnn")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="dlapps batch (default 512 on CUDA, 128 else)")
    parser.add_argument("--bf16", action="store_true", help="bf16 rows even where the device emulates bf16")
    parser.add_argument("--rows", help="only these dlapps rows, comma-separated (the seed-style loop always runs)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    chosen = variants(device, args.bf16)
    if args.rows:
        keep = {"seed-style", *args.rows.split(",")}
        if keep - set(chosen):
            parser.error(f"unknown rows {sorted(keep - set(chosen))}; rows here: {', '.join(chosen)}")
        chosen = {name: how for name, how in chosen.items() if name in keep}
    spec = get_dataset("cifar10")
    train = load_arrays("cifar10", "train").subset(args.train_size)
    test_loader = ResidentLoader(load_arrays("cifar10", "test").subset(2000), batch_size=1000, device=device)
    batch = args.batch_size or (512 if device.type == "cuda" else 128)
    curves: dict[str, list] = {}
    for seed, (name, how) in itertools.product(range(args.seeds), chosen.items()):
        torch.manual_seed(seed)
        model = create_model(args.model, num_classes=10, in_shape=(3, 32, 32), mean=spec.mean, std=spec.std).to(device)
        if how is None:
            curve = seed_style(model, train, test_loader, args.epochs, device)
        else:
            curve = dlapps_loop(model, train, test_loader, args.epochs, device, batch, how[1], how[0])
        curves.setdefault(name, []).append(curve)
    target = statistics.mean(curve[-1][1] for curve in curves["seed-style"])
    rows = {
        name: {
            "images_per_second": [args.epochs * len(train) / curve[-1][0] for curve in runs],
            "final_test_acc": [curve[-1][1] for curve in runs],
            "seconds_to_target": [time_to(curve, target) for curve in runs],
            "curves": runs,
        }
        for name, runs in curves.items()
    }
    base = statistics.mean(rows["seed-style"]["images_per_second"])
    print(f"{'loop':22s} {'img/s':>8s} {'speed-up':>9s} {'test acc per seed':>20s}")
    for name, row in rows.items():
        speed = statistics.mean(row["images_per_second"])
        row["speedup"] = speed / base
        accs = " / ".join(f"{a:.3f}" for a in row["final_test_acc"])
        print(f"{name:22s} {speed:8.0f} {row['speedup']:8.2f}x {accs:>20s}")
    result = {"model": args.model, "train_size": args.train_size, "epochs": args.epochs, "seeds": args.seeds, "dlapps_batch": batch,
              "native_bf16": native_bf16(device), "target_accuracy": target, "results": rows}  # fmt: skip
    print(f"-> {write_result(f'train_throughput-{args.model}', device, result)}")


if __name__ == "__main__":
    main()
