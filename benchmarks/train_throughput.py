"""Training throughput and time-to-accuracy: dlapps' trainer vs a seed-style DataLoader loop.

Same model (CIFAR ResNet-20), data, optimiser, epochs and seed in the same run. The seed-style loop is the
course's: a torch DataLoader over per-sample torchvision transforms, fp32, batch 128. dlapps keeps uint8
data on the device and augments whole batches; on CUDA it adds bf16 autocast, channels-last and, unless
--no-compile, torch.compile. Throughput counts training steps only (evaluation is timed apart in both);
time-to-accuracy is the training time until the test accuracy first reaches the seed-style loop's final one.

    DLAPPS_DATA=../shared/data python benchmarks/train_throughput.py --train-size 5000 --epochs 2

Writes benchmarks/results/train_throughput-<device>.json and prints a table. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
import torch.nn.functional as F
from _common import write_result
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from dlapps.data import ResidentLoader, get_dataset, load_arrays
from dlapps.models import create_model
from dlapps.train import TrainConfig, evaluate, fit, resolve_device


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


def dlapps_loop(model, train, test_loader, epochs, device, batch_size, compile_) -> list[tuple[float, float]]:
    loader = ResidentLoader(train, batch_size=batch_size, shuffle=True, crop_padding=4, hflip=True, device=device)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="sgd", lr=0.05, weight_decay=5e-4)
    history = fit(model, loader, test_loader, config, compile=compile_)
    seconds = itertools.accumulate(h.train_seconds for h in history)
    return [(s, h.test_acc) for s, h in zip(seconds, history, strict=True)]


def time_to(curve: list[tuple[float, float]], accuracy: float) -> float | None:
    return next((seconds for seconds, acc in curve if acc >= accuracy), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="dlapps batch (default 512 on CUDA, 128 else)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="default: CUDA only")
    args = parser.parse_args()
    device = resolve_device(args.device)
    spec = get_dataset("cifar10")
    train = load_arrays("cifar10", "train").subset(args.train_size)
    test_loader = ResidentLoader(load_arrays("cifar10", "test").subset(2000), batch_size=1000, device=device)
    batch = args.batch_size or (512 if device.type == "cuda" else 128)
    compile_ = device.type == "cuda" if args.compile is None else args.compile
    curves = {}
    for name in ("seed-style", "dlapps"):
        torch.manual_seed(0)
        model = create_model("resnet20", num_classes=10, in_shape=(3, 32, 32), mean=spec.mean, std=spec.std).to(device)
        if name == "seed-style":
            curves[name] = seed_style(model, train, test_loader, args.epochs, device)
        else:
            curves[name] = dlapps_loop(model, train, test_loader, args.epochs, device, batch, compile_)
    target = curves["seed-style"][-1][1]
    rows = {
        name: {
            "images_per_second": args.epochs * len(train) / curve[-1][0],
            "final_test_acc": curve[-1][1],
            "seconds_to_target": time_to(curve, target),
            "curve": curve,
        }
        for name, curve in curves.items()
    }
    print(f"{'loop':12s} {'img/s':>10s} {'test acc':>9s} {'s to ' + format(target, '.3f'):>12s}")
    for name, row in rows.items():
        reached = row["seconds_to_target"]
        print(
            f"{name:12s} {row['images_per_second']:10.0f} {row['final_test_acc']:9.4f} "
            f"{'not reached' if reached is None else format(reached, '.1f'):>12s}"
        )
    result = {
        "train_size": args.train_size,
        "epochs": args.epochs,
        "dlapps_batch": batch,
        "dlapps_compile": compile_,
        "target_accuracy": target,
        "results": rows,
        "speedup": rows["dlapps"]["images_per_second"] / rows["seed-style"]["images_per_second"],
    }
    out = write_result("train_throughput", device, result)
    print(f"speed-up {result['speedup']:.2f}x -> {out}")


if __name__ == "__main__":
    main()
