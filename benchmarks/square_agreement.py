"""Robust accuracy of the shared ResNet-20 under the Square attack: dlapps' against torchattacks' Square.

    DLAPPS_DATA=../shared/data python benchmarks/square_agreement.py --images 500 --queries 5000 --eps 1 2

The same CIFAR-10 test images, ε (in grey levels) and query budget for both, L∞, p_init 0.8, margin loss,
untargeted. Square is a random search, so the two agree in distribution, not image by image: robust accuracies
within a point or two on 500 images. dlapps draws one window per image and query and stops each image once it
is fooled; torchattacks draws one window per query for the whole batch and attacks the images not yet fooled.
Both draw their random numbers from ``--seed``; compare seeds to see how far two runs of one implementation
differ. Writes benchmarks/results/square_agreement-<queries>q-seed<seed>-<device>.json and prints a table. Run
by hand, not in CI.
"""

from __future__ import annotations

import argparse

import torch
import torchattacks
from _common import add_machine_arguments, resnet20_and_images, timed, write_result

from dlapps.attacks import attack, summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--queries", type=int, default=5000, help="queries after the first (n_queries)")
    parser.add_argument("--eps", type=float, nargs="+", default=[1, 2], help="ε in grey levels (x/255)")
    parser.add_argument("--p-init", type=float, default=0.8)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    add_machine_arguments(parser)
    args = parser.parse_args()
    model, x, y = resnet20_and_images(args)
    device = torch.device(args.device)
    with torch.no_grad():  # warm up: the first passes of a layout are slow, and neither side should pay them
        for _ in range(3):
            model(x[: args.batch])

    def torchattacks_square(eps: float) -> float:
        square = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=args.queries, p_init=args.p_init,
                                     loss="margin", seed=args.seed)  # fmt: skip
        robust = 0
        with torch.no_grad():
            for xb, yb in zip(x.split(args.batch), y.split(args.batch), strict=True):
                robust += int((model(square(xb, yb)).argmax(1) == yb).sum())
        return robust / len(x)

    rows = []
    for eps_255 in args.eps:
        eps = eps_255 / 255
        ours, ours_s = timed(device, lambda eps=eps: attack(model, x, y, method="square", eps=eps, steps=args.queries,
                                                    p_init=args.p_init, batch_size=args.batch,
                                                    generator=torch.Generator().manual_seed(args.seed)))  # fmt: skip
        theirs, theirs_s = timed(device, torchattacks_square, eps)
        summary = summarize(ours)
        row = {
            "eps_255": eps_255,
            "clean_accuracy": summary["clean_accuracy"],
            "robust_accuracy": {"dlapps": summary["robust_accuracy"], "torchattacks": theirs},
            "difference_points": 100 * (summary["robust_accuracy"] - theirs),
            "dlapps_mean_queries_to_success": summary["mean_iterations"],
            "seconds": {"dlapps": ours_s, "torchattacks": theirs_s},
            "images_per_second": {"dlapps": len(x) / ours_s, "torchattacks": len(x) / theirs_s},
        }
        rows.append(row)
        print(
            f"ε = {eps_255:g}/255: clean {summary['clean_accuracy']:.3f}, robust dlapps {summary['robust_accuracy']:.3f} "
            f"({ours_s:.0f} s, {len(x) / ours_s:.2f} img/s), torchattacks {theirs:.3f} "
            f"({theirs_s:.0f} s, {len(x) / theirs_s:.2f} img/s)",
            flush=True,
        )
    out = write_result(
        f"square_agreement-{args.queries}q-seed{args.seed}", device,
        {"images": args.images, "queries": args.queries, "p_init": args.p_init, "batch": args.batch,
         "seed": args.seed, "results": rows},
    )  # fmt: skip
    print(f"-> {out}")


if __name__ == "__main__":
    main()
