"""Images per second of inference, and of input gradients, against the batch size, on the CPU.

    python benchmarks/inference_batch.py --threads 2
    python benchmarks/inference_batch.py --threads 1      # as in a worker training side by side

Measures the models the studies analyse (the small CNN, ResNet-20, the quick profile's narrow ResNet-32; MobileNetV2
at 224 pixels with ``--imagenet``) in channels-last eval mode, as :class:`~dlapps.models.Classifier` runs them,
on random images. What :func:`dlapps.models.layout.inference_batch` picks is marked. Writes
benchmarks/results/inference_batch-<threads>t-cpu.json. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision
from _common import write_result

from dlapps.models.layout import fast_layout, inference_batch
from dlapps.models.registry import create_model

CIFAR = {"num_classes": 10, "in_shape": (3, 32, 32)}


def rate(model: torch.nn.Module, x: torch.Tensor, batch: int, gradients: bool, repeats: int = 3) -> float:
    """Best of ``repeats`` passes over ``x``, in images per second."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for chunk in x.split(batch):
            if gradients:
                chunk = chunk.clone().requires_grad_(True)
                loss = F.cross_entropy(model(chunk), torch.zeros(len(chunk), dtype=torch.long))
                torch.autograd.grad(loss, chunk)
            else:
                with torch.no_grad():
                    model(chunk)
        best = min(best, time.perf_counter() - started)
    return len(x) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--images", type=int, default=2000, help="32-pixel images per pass")
    parser.add_argument("--imagenet", action="store_true", help="also MobileNetV2 on 224-pixel images (slow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    models = {
        "small CNN": create_model("small_cnn", **CIFAR),
        "ResNet-20": create_model("cifar_resnet", **CIFAR, blocks=3),
        "ResNet-32, widths 8-16-32": create_model("cifar_resnet", **CIFAR, blocks=5, widths=(8, 16, 32)),
    }
    cases = [
        (name, model, torch.rand(args.images, 3, 32, 32), (1000, 500, 250, 128, 64)) for name, model in models.items()
    ]
    if args.imagenet:
        cases.append(
            ("MobileNetV2, 224 px", torchvision.models.mobilenet_v2(), torch.rand(64, 3, 224, 224), (32, 16, 8, 4, 2))
        )
    rows = []
    for name, model, x, batches in cases:
        model = fast_layout(model.eval(), cpu)
        chosen = inference_batch(tuple(x.shape[1:]), cpu)
        for gradients in (False, True):
            for batch in sorted({*batches, chosen}, reverse=True):
                row = {"model": name, "pass": "input gradient" if gradients else "forward", "batch": batch,
                       "chosen": batch == chosen, "images_per_second": rate(model, x, batch, gradients)}  # fmt: skip
                rows.append(row)
                print(f"{name:28s} {row['pass']:15s} batch {batch:5d}{' *' if row['chosen'] else '  '} "
                      f"{row['images_per_second']:8.0f} img/s")  # fmt: skip
    out = write_result(f"inference_batch-{args.threads}t", cpu, {"threads": args.threads, "rows": rows})
    print(f"-> {out}")


if __name__ == "__main__":
    main()
