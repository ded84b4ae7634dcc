"""Training throughput and accuracy: dlapps' resident-data loop vs a seed-style DataLoader loop.

Same model (CIFAR ResNet-20), data, optimiser, epochs and seed in the same run. The seed-style loop is the
course's: a torch DataLoader over per-sample torchvision transforms, fp32, batch 128. dlapps keeps uint8
data on the device and augments whole batches; on CUDA it adds bf16 autocast.

    DLAPPS_DATA=../shared/data python benchmarks/train_throughput.py --train-size 5000 --epochs 2

Writes benchmarks/results/train_throughput-<device>.json and prints a table. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from dlapps.data import ResidentLoader, get_spec, load_arrays
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


def seed_style(model, train, test_loader, epochs: int, device) -> tuple[float, float]:
    loader = DataLoader(SeedStyleCifar(train.images, train.labels), batch_size=128, shuffle=True, num_workers=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    started, seen = time.perf_counter(), 0
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started), evaluate(model, test_loader)[1]


def dlapps_loop(model, train, test_loader, epochs: int, device, batch_size: int) -> tuple[float, float]:
    loader = ResidentLoader(train, batch_size=batch_size, shuffle=True, crop_padding=4, hflip=True, device=device)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="sgd", lr=0.05, weight_decay=5e-4)
    history = fit(model, loader, test_loader, config)
    # Epoch times include the per-epoch evaluation, which the seed-style timing leaves out: a fair upper bound.
    return epochs * len(train) / sum(h.seconds for h in history), history[-1].test_acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="dlapps batch (default 512 on CUDA, 128 else)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    spec = get_spec("cifar10")
    train = load_arrays("cifar10", "train").subset(args.train_size)
    test_loader = ResidentLoader(load_arrays("cifar10", "test").subset(2000), batch_size=1000, device=device)
    batch = args.batch_size or (512 if device.type == "cuda" else 128)
    rows = {}
    for name in ("seed-style", "dlapps"):
        torch.manual_seed(0)
        model = create_model("resnet20", num_classes=10, in_shape=(3, 32, 32), mean=spec.mean, std=spec.std).to(device)
        if name == "seed-style":
            rate, acc = seed_style(model, train, test_loader, args.epochs, device)
        else:
            rate, acc = dlapps_loop(model, train, test_loader, args.epochs, device, batch)
        rows[name] = {"images_per_second": rate, "test_acc": acc}
        print(f"{name:12s} {rate:10.0f} img/s   test acc {acc:.4f}")
    result = {
        "benchmark": "train_throughput",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "train_size": args.train_size,
        "epochs": args.epochs,
        "dlapps_batch": batch,
        "results": rows,
        "speedup": rows["dlapps"]["images_per_second"] / rows["seed-style"]["images_per_second"],
    }
    out = Path(__file__).parent / "results" / f"train_throughput-{device.type}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"speed-up {result['speedup']:.2f}x -> {out}")


if __name__ == "__main__":
    main()
