"""The 15 common corruptions: dlapps' batched torch versions against imagecorruptions, in accuracy and speed.

    DLAPPS_DATA=../shared/data python benchmarks/corruption_agreement.py --images 500 --threads 1
    DLAPPS_DATA=../shared/data python benchmarks/corruption_agreement.py --sections speed224 --threads 1

``agreement``: the shared ResNet-20's accuracy on ``--images`` CIFAR-10 test images corrupted by each
implementation, per corruption and severity (the issue's acceptance check: within 2 points), with the mean
absolute change from the clean images, the mean per-image PSNR and the seconds each took. The random corruptions
draw from different generators (torch's, numpy's), so they agree in distribution, not image by image: to see how
far imagecorruptions disagrees with itself, run again with another ``--seed`` (both draw from it) and compare.
``speed224``: seconds to corrupt ``--images-224`` Imagenette validation images (224 px) at severity
``--speed-severity`` with each. Writes benchmarks/results/corruption_agreement-seed<seed>-<device>.json and
corruption_speed224-<device>.json and prints a table. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from _common import add_machine_arguments, resnet20_and_images, timed, write_result

from dlapps.data import load_arrays
from dlapps.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt, corruption_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference, shared with the tests
from corruption_reference import reference_corrupt  # noqa: E402


def change_and_psnr(corrupted: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """Mean absolute change from the clean images and mean per-image PSNR (dB), images in [0, 1]."""
    error = (corrupted.float() - clean.float()).flatten(1)
    psnr = -10 * error.square().mean(1).clamp(min=1e-12).log10()
    return error.abs().mean().item(), psnr.mean().item()


def agreement(args: argparse.Namespace, names: list[str]) -> None:
    model, x, y = resnet20_and_images(args)
    device = torch.device(args.device)
    pixels = (x * 255).round().to(torch.uint8).cpu()

    def accuracy(images: torch.Tensor) -> float:
        with torch.no_grad():
            hits = sum(int((model(part).argmax(1) == labels).sum())
                       for part, labels in zip(images.split(args.batch), y.split(args.batch), strict=True))  # fmt: skip
        return hits / len(y)

    rows = []
    for name in names:
        for severity in SEVERITIES:
            generator = torch.Generator().manual_seed(corruption_seed(args.seed, name, severity))
            ours, ours_s = timed(device, corrupt, x, name, severity, generator=generator)
            theirs, theirs_s = timed("cpu", reference_corrupt, pixels, name, severity, args.seed)
            theirs = (theirs.float() / 255).to(device)
            row = {"corruption": name, "severity": severity,
                   "accuracy": {"dlapps": accuracy(ours), "imagecorruptions": accuracy(theirs)},
                   "mean_change": {}, "mean_psnr": {}, "seconds": {"dlapps": ours_s, "imagecorruptions": theirs_s}}  # fmt: skip
            for who, images in (("dlapps", ours), ("imagecorruptions", theirs)):
                row["mean_change"][who], row["mean_psnr"][who] = change_and_psnr(images, x)
            row["difference_points"] = 100 * (row["accuracy"]["dlapps"] - row["accuracy"]["imagecorruptions"])
            rows.append(row)
            print(f"{name:18s} {severity}  accuracy dlapps {row['accuracy']['dlapps']:.3f} imagecorruptions "
                  f"{row['accuracy']['imagecorruptions']:.3f} ({row['difference_points']:+.1f})  change "
                  f"{row['mean_change']['dlapps']:.4f} / {row['mean_change']['imagecorruptions']:.4f}  PSNR "
                  f"{row['mean_psnr']['dlapps']:.2f} / {row['mean_psnr']['imagecorruptions']:.2f}  seconds "
                  f"{ours_s:.2f} / {theirs_s:.2f}", flush=True)  # fmt: skip
    out = write_result(f"corruption_agreement-seed{args.seed}", device,
                       {"images": args.images, "seed": args.seed, "clean_accuracy": accuracy(x), "results": rows})  # fmt: skip
    print(f"-> {out}")


def speed224(args: argparse.Namespace, names: list[str]) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pixels = load_arrays("imagenette", "val").subset(args.images_224).images
    x = (pixels.float() / 255).to(device)
    rows = []
    for name in names:
        generator = torch.Generator().manual_seed(corruption_seed(args.seed, name, args.speed_severity))
        _, ours_s = timed(device, corrupt, x, name, args.speed_severity, generator=generator)
        _, theirs_s = timed("cpu", reference_corrupt, pixels, name, args.speed_severity, args.seed)
        rows.append({"corruption": name, "seconds": {"dlapps": ours_s, "imagecorruptions": theirs_s}})
        print(f"{name:18s} dlapps {ours_s:6.2f} s  imagecorruptions {theirs_s:6.2f} s  ({theirs_s / ours_s:.1f}x)",
              flush=True)  # fmt: skip
    out = write_result("corruption_speed224", device,
                       {"images": args.images_224, "severity": args.speed_severity, "results": rows})  # fmt: skip
    print(f"-> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="agreement", help="comma-separated: agreement, speed224")
    parser.add_argument("--images", type=int, default=500, help="CIFAR-10 test images for the agreement")
    parser.add_argument("--images-224", type=int, default=50, help="Imagenette images for speed224")
    parser.add_argument("--speed-severity", type=int, default=3)
    parser.add_argument("--corruptions", nargs="+", default=list(CORRUPTIONS.names()))
    parser.add_argument("--batch", type=int, default=500, help="images per forward pass")
    parser.add_argument("--seed", type=int, default=0)
    add_machine_arguments(parser)
    args = parser.parse_args()
    sections = {"agreement": agreement, "speed224": speed224}
    for section in args.sections.split(","):
        sections[section](args, args.corruptions)


if __name__ == "__main__":
    main()
