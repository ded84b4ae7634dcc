"""Images per second of attacks on the shared ResNet-20: torchattacks' BIM, APGD and APGDT against dlapps.attacks.

    DLAPPS_DATA=../shared/data python benchmarks/attack_speed.py --images 1000 --threads 1
    DLAPPS_DATA=../shared/data python benchmarks/attack_speed.py --sections apgd --images 500 --threads 2

torchattacks (a dev-only dependency) always takes every step; dlapps with early stop retires each image as
soon as it is fooled and gives its slot in the fixed-shape batch to the next image waiting. The ``bim`` section
times iterative FGSM (best of ``--repeats``); the ``apgd`` section runs APGD-CE and APGD-T (100 steps, one restart,
9 target classes) once each at ε = 1/255 and 2/255 (L∞) and 0.1 (L2), and records the robust accuracy each
implementation measures on the same images beside its speed. Writes benchmarks/results/attack_speed-<device>.json
(bim) and attack_speed-apgd-<device>.json (apgd) and prints a table. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse

import torch
import torchattacks
from _common import add_machine_arguments, resnet20_and_images, timed, write_result

from dlapps.attacks import attack, summarize

APGD_SETTINGS = [("linf", 1 / 255), ("linf", 2 / 255), ("l2", 0.1), ("l2", 0.25)]  # (threat, ε)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="bim,apgd", help="comma-separated: bim, apgd")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=125)
    parser.add_argument("--steps", type=int, default=10, help="BIM steps")
    parser.add_argument("--apgd-steps", type=int, default=100)
    parser.add_argument("--apgd-methods", default="apgd-ce,apgd-t", help="comma-separated: apgd-ce, apgd-t")
    parser.add_argument("--apgd-threats", default="linf,l2", help="comma-separated: linf, l2")
    parser.add_argument("--repeats", type=int, default=2, help="BIM: the best of this many runs is reported")
    add_machine_arguments(parser)
    args = parser.parse_args()
    model, x, y = resnet20_and_images(args)
    sections = args.sections.split(",")
    if "bim" in sections:
        bim_section(args, model, x, y)
    if "apgd" in sections:
        apgd_section(args, model, x, y)


def bim_section(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
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
                best[name] = min(best[name], timed(args.device, run)[1])
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


def apgd_section(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """APGD-CE and APGD-T, one run each: torchattacks in batches of ``--batch``, dlapps with early stop in as many
    slots; the robust accuracy of each is measured on the same images."""
    steps, rows = args.apgd_steps, []

    def torchattacks_apgd(method: str, threat: str, eps: float) -> float:
        norm = {"linf": "Linf", "l2": "L2"}[threat]
        if method == "apgd-t":
            reference = torchattacks.APGDT(model, norm=norm, eps=eps, steps=steps, n_restarts=1, n_classes=10)
        else:
            reference = torchattacks.APGD(model, norm=norm, eps=eps, steps=steps, n_restarts=1, loss="ce")
        robust = 0
        for xb, yb in zip(x.split(args.batch), y.split(args.batch), strict=True):
            with torch.no_grad():
                robust += int((model(reference(xb, yb)).argmax(1) == yb).sum())
        return robust / len(x)

    print(f"APGD, {steps} steps, {len(x)} images: robust accuracy and img/s")
    for method in args.apgd_methods.split(","):
        for threat, eps in (s for s in APGD_SETTINGS if s[0] in args.apgd_threats.split(",")):
            settings = {"eps": eps, "threat": threat, "steps": steps, "batch_size": args.batch}
            reference, reference_seconds = timed(args.device, torchattacks_apgd, method, threat, eps)
            generator = torch.Generator(device=x.device).manual_seed(0)
            result, seconds = timed(args.device, attack, model, x, y, method, generator=generator, **settings)
            summary = summarize(result)
            label = f"{eps * 255:g}/255" if threat == "linf" else f"{eps:g}"
            print(
                f"  {method:7s} {threat:4s} ε = {label:6s} robust accuracy torchattacks {reference:.3f}, "
                f"dlapps {summary['robust_accuracy']:.3f} (clean {summary['clean_accuracy']:.3f}); img/s "
                f"torchattacks {len(x) / reference_seconds:6.1f}, dlapps {len(x) / seconds:6.1f} "
                f"({reference_seconds / seconds:.2f}x); dlapps mean iterations {summary['mean_iterations']:.2f}",
                flush=True,
            )
            rows.append(
                {
                    "method": method,
                    "threat": threat,
                    "eps": eps,
                    "clean_accuracy": summary["clean_accuracy"],
                    "robust_accuracy": {"torchattacks": reference, "dlapps": summary["robust_accuracy"]},
                    "mean_iterations": summary["mean_iterations"],
                    "images_per_second": {"torchattacks": len(x) / reference_seconds, "dlapps": len(x) / seconds},
                    "speedup_early_stop": reference_seconds / seconds,
                }
            )
    chosen = "".join(f"-{part.replace(',', '+')}" for part, default in ((args.apgd_methods, "apgd-ce,apgd-t"),
                     (args.apgd_threats, "linf,l2")) if part != default)  # a subset gets a file of its own  # fmt: skip
    out = write_result(
        f"attack_speed-apgd{chosen}", torch.device(args.device),
        {"images": len(x), "batch": args.batch, "steps": steps, "restarts": 1, "target_classes": 9, "results": rows},
    )  # fmt: skip
    print(f"-> {out}")


if __name__ == "__main__":
    main()
