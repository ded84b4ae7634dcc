"""Images per second of iterative FGSM on the shared ResNet-20: torchattacks' BIM against dlapps.attacks.

    DLAPPS_DATA=../shared/data python benchmarks/attack_speed.py --images 1000 --threads 1

torchattacks (a dev-only dependency) always takes every step; dlapps with early stop retires each image as
soon as it is fooled and gives its slot in the fixed-shape batch to the next image waiting. Writes
benchmarks/results/attack_speed-<device>.json and prints a table. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchattacks
from _common import write_result

from dlapps.attacks import attack, summarize
from dlapps.data import load_arrays
from dlapps.models import load_pretrained
from dlapps.models.layout import fast_layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=125)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2, help="the best of this many runs is reported")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = fast_layout(load_pretrained("resnet20_cifar10").to(device), device)  # as every study runs it
    data = load_arrays("cifar10", "test").subset(args.images)
    x, y = (data.images.float() / 255).to(args.device), data.labels.to(args.device)

    def torchattacks_bim(eps: float) -> None:
        bim = torchattacks.BIM(model, eps=eps, alpha=eps / 4, steps=args.steps)
        for xb, yb in zip(x.split(args.batch), y.split(args.batch), strict=True):
            bim(xb, yb)

    rows = []
    for eps in (2 / 255, 8 / 255):
        settings = {"eps": eps, "alpha": eps / 4, "steps": args.steps, "batch_size": args.batch}
        runs = {
            "torchattacks BIM": lambda eps=eps: torchattacks_bim(eps),
            "dlapps, no early stop": lambda s=settings: attack(model, x, y, early_stop=False, **s),
            "dlapps, early stop": lambda s=settings: attack(model, x, y, **s),
        }
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeats):
            for name, run in runs.items():
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                started = time.perf_counter()
                run()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                best[name] = min(best[name], time.perf_counter() - started)
        summary = summarize(attack(model, x, y, **settings))
        print(
            f"ε = {eps * 255:g}/255: success {summary['success_rate']:.3f}, "
            f"mean iterations {summary['mean_iterations']:.2f}"
        )
        for name, seconds in best.items():
            print(f"  {name:24s} {args.images / seconds:8.1f} img/s")
        rows.append(
            {
                "eps": eps,
                "success_rate": summary["success_rate"],
                "mean_iterations": summary["mean_iterations"],
                "images_per_second": {name: args.images / seconds for name, seconds in best.items()},
                "speedup_early_stop": best["torchattacks BIM"] / best["dlapps, early stop"],
            }
        )
    out = write_result(
        "attack_speed", torch.device(args.device),
        {"images": args.images, "batch": args.batch, "steps": args.steps, "results": rows},
    )  # fmt: skip
    print(f"-> {out}")


if __name__ == "__main__":
    main()
