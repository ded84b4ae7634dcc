"""Study ``fgsm``: how far does a perturbation of ε grey levels get an attacker, and how fast?

Iterative FGSM (by default; any attack of :mod:`dlapps.attacks`) with per-sample early stop attacks a
CIFAR-10 model on the test set at every ε of a sweep, at most ``steps`` steps of ``alpha_fraction · ε``
each. Writes the success rate, mean iterations to success, mean true-class confidence drop and robust
accuracy against ε (the course write-up's three panels, plus robust accuracy), a table, and an examples
figure: originals, perturbations amplified to full range, and adversarial images with their predictions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from dlapps.attacks import METHODS, AttackResult, attack
from dlapps.config import require
from dlapps.data import ImageArrays, load_arrays
from dlapps.experiments.attack_common import PIXEL, VictimConfig, cached_attack, eps_label, load_victim
from dlapps.experiments.base import RunCache, RunContext, Study, environment_section, study_results
from dlapps.report import figures
from dlapps.report.comparison import Comparison, comparison_section
from dlapps.report.io import save_figure, staged_output, write_csv, write_json, write_text
from dlapps.report.markdown import format_number, table


@dataclass(frozen=True)
class FGSMConfig:
    victim: VictimConfig = field(default_factory=VictimConfig)
    method: Literal["fgsm", "bim", "pgd", "mifgsm"] = "bim"
    epsilons: tuple[float, ...] = (0.5, 1, 2, 3, 4, 6, 8, 12, 16)  # grey levels (units of 1/255)
    steps: int = 10
    alpha_fraction: float = 0.25  # step size as a fraction of ε (one-step FGSM always steps ε)
    test_subset: int | None = None  # None: all 10,000 test images
    batch_size: int = 250
    example_eps: float = 1.0  # grey levels; the course write-up showed FGSM examples at 1/255
    examples: int = 6
    seed: int = 0  # test subset, random starts

    def validate(self) -> None:
        require(len(self.epsilons) > 0, "epsilons must not be empty")
        require(all(e >= 0 for e in (*self.epsilons, self.example_eps)), "every ε must be >= 0 (grey levels)")
        require(list(self.epsilons) == sorted(set(self.epsilons)), f"epsilons must increase, got {self.epsilons}")
        require(self.steps > 0, f"steps must be positive, got {self.steps}")
        require(self.method != "fgsm" or self.steps == 1, "fgsm takes one step: set steps=1 (or method=bim)")
        require(self.alpha_fraction > 0, f"alpha_fraction must be positive, got {self.alpha_fraction}")
        require(self.test_subset is None or self.test_subset > 0, "test_subset must be positive or none")
        require(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        require(self.examples > 0, f"examples must be positive, got {self.examples}")

    def attack_kwargs(self, eps: float) -> dict[str, Any]:
        """Arguments of :func:`dlapps.attacks.attack` at ``eps`` grey levels."""
        alpha = None if self.method == "fgsm" else self.alpha_fraction * eps * PIXEL
        return {"method": self.method, "eps": eps * PIXEL, "alpha": alpha, "early_stop": True}


def run(config: FGSMConfig, ctx: RunContext) -> dict[str, Any]:
    started = time.perf_counter()
    test = load_arrays("cifar10", "test", ctx.data_root, ctx.download).subset(config.test_subset, config.seed)
    cache = RunCache(ctx.out / "runs")
    with ctx.progress() as progress:
        model, victim = load_victim(config.victim, ctx, progress)
        rows = []
        for eps in config.epsilons:
            record = cached_attack(
                cache,
                f"{config.method}-eps{eps:g}",
                model,
                victim,
                test,
                seed=config.seed,
                steps=config.steps,
                batch_size=config.batch_size,
                progress=progress,
                **config.attack_kwargs(eps),
            )
            rows.append({"eps_255": eps, "eps": eps * PIXEL, **record})
            progress.console.print(
                f"ε = {eps_label(eps):>7}: success {record['success_rate']:.3f}, "
                f"robust accuracy {record['robust_accuracy']:.3f} ({record['seconds']:.0f} s)"
            )
        examples = _examples(model, test, config)
    results = study_results(
        "fgsm",
        config,
        ctx,
        started,
        victim=victim,
        data={"test": test.source, "test_size": len(test)},
        sweep=rows,
        examples=examples,
        cached_runs=cache.hits,
    )
    with staged_output(ctx.out) as stage:
        _write_artifacts(stage, config, results, test.classes)
    return results


@torch.no_grad()
def _examples(model: nn.Module, test: ImageArrays, config: FGSMConfig) -> dict[str, Any]:
    """Attacks at ``example_eps`` on the first test images: successes of distinct classes first.

    ``images`` holds (original, adversarial) as (N, H, W, C) arrays for the figure; the rest is JSON-ready.
    """
    pool = test.take(torch.arange(min(len(test), 20 * config.examples))).to(next(model.parameters()).device)
    x = pool.images.float() / 255
    result = attack(
        model,
        x,
        pool.labels,
        steps=config.steps,
        generator=torch.Generator().manual_seed(config.seed),
        **config.attack_kwargs(config.example_eps),
    )
    chosen = _pick_examples(result, config.examples)
    probs_before = torch.softmax(model(x[chosen]), 1)
    probs_after = torch.softmax(model(result.adversarial[chosen]), 1)
    images = [t[chosen].permute(0, 2, 3, 1).cpu().numpy() for t in (x, result.adversarial)]
    return {
        "eps_255": config.example_eps,
        "images": tuple(images),
        "label": result.labels[chosen].tolist(),
        "pred_before": result.pred_before[chosen].tolist(),
        "pred_after": result.pred_after[chosen].tolist(),
        "confidence_before": probs_before.max(1).values.tolist(),
        "confidence_after": probs_after.max(1).values.tolist(),
        "iterations": result.iterations[chosen].tolist(),
        "success": result.success[chosen].tolist(),
    }


def _pick_examples(result: AttackResult, count: int) -> torch.Tensor:
    """Indices of attacked samples, successes of distinct classes first, then other successes, then failures."""
    attacked = result.attacked.nonzero().flatten().tolist()
    succeeded = [i for i in attacked if result.success[i]]
    distinct: dict[int, int] = {}  # class -> first successful sample of that class
    for i in succeeded:
        distinct.setdefault(int(result.labels[i]), i)
    first = list(distinct.values())
    order = first + [i for i in succeeded if i not in first] + [i for i in attacked if i not in succeeded]
    return torch.tensor(order[:count], dtype=torch.int64)


def _write_artifacts(stage: Path, config: FGSMConfig, results: dict[str, Any], classes: tuple[str, ...]) -> None:
    rows = results["sweep"]
    examples = {k: v for k, v in results["examples"].items() if k != "images"}
    write_json(stage / "results.json", {**results, "examples": examples})
    write_csv(stage / "results.csv", [{k: v for k, v in r.items() if k != "cumulative_success"} for r in rows])
    sweep_md = _sweep_table(rows)
    write_text(stage / "table.md", sweep_md)
    save_figure(_sweep_figure(config, results), stage / "sweep.png")
    save_figure(_examples_figure(results["examples"], classes), stage / "examples.png")
    write_text(stage / "report.md", _report(config, results, sweep_md))


def _sweep_table(rows: list[dict[str, Any]]) -> str:
    return table(
        ["ε", "attacked", "success rate", "mean iterations", "mean confidence drop", "robust accuracy", "seconds"],
        [
            [
                eps_label(r["eps_255"]),
                r["attacked"],
                format_number(r["success_rate"]),
                format_number(r["mean_iterations"], 2),
                format_number(r["mean_confidence_drop"]),
                format_number(r["robust_accuracy"]),
                f"{r['seconds']:.0f}",
            ]
            for r in rows
        ],
    )


def _sweep_figure(config: FGSMConfig, results: dict[str, Any]):
    rows = results["sweep"]
    x = [r["eps_255"] for r in rows]

    def series(key: str) -> tuple[list[float], list[float]]:
        return x, [np.nan if r[key] is None else r[key] for r in rows]

    panels = {
        "attack success rate": {"": series("success_rate")},
        f"mean iterations to success (max {config.steps})": {"": series("mean_iterations")},
        "mean true-class confidence drop": {"": series("mean_confidence_drop")},
        "accuracy": {"robust": series("robust_accuracy"), "clean": series("clean_accuracy")},
    }
    unit = (0, 1.02)
    return figures.line_panels(
        panels,
        xlabel="ε (grey levels, /255)",
        xticks=x,
        xticklabels=[f"{e:g}" for e in x],
        log2_x=min(x) > 0,
        ylims={
            "attack success rate": unit,
            "mean true-class confidence drop": unit,
            "accuracy": unit,
            f"mean iterations to success (max {config.steps})": (0, config.steps + 0.5),
        },
        title=f"{config.method.upper()} on {results['victim']['name']}, {results['data']['test_size']} CIFAR-10 test "
        f"images, step {config.alpha_fraction:g}·ε, early stop",
    )


def _examples_figure(examples: dict[str, Any], classes: tuple[str, ...]):
    original, adversarial = examples["images"]
    delta = adversarial - original
    eps = examples["eps_255"] / 255
    scale = 0.5 / eps if eps > 0 else 1.0
    amplified = 0.5 + delta * scale  # ±ε maps to 0 and 1
    steps = ["no success" if k < 0 else f"{k} step{'s' if k != 1 else ''}" for k in examples["iterations"]]
    return figures.image_grid(
        {
            "original": list(original),
            f"perturbation ×{scale:.0f}": list(amplified),
            "adversarial": list(adversarial),
        },
        {
            "original": [
                f"{classes[p]} {c:.0%}"
                for p, c in zip(examples["pred_before"], examples["confidence_before"], strict=True)
            ],
            f"perturbation ×{scale:.0f}": steps,
            "adversarial": [
                f"{classes[p]} {c:.0%}"
                for p, c in zip(examples["pred_after"], examples["confidence_after"], strict=True)
            ],
        },
        title=f"ε = {eps_label(examples['eps_255'])}: prediction and confidence before and after",
    )


def _report(config: FGSMConfig, results: dict[str, Any], sweep_md: str) -> str:
    victim = results["victim"]
    alpha = "ε (one step)" if config.method == "fgsm" else f"{config.alpha_fraction:g}·ε"
    lines = [
        "# Adversarial examples: success against ε",
        "",
        f"{config.method.upper()} attacks {victim['name']} ({victim['reference']}) on "
        f"{results['data']['test_size']} CIFAR-10 test images: at most {config.steps} step(s) of {alpha}, "
        "projected onto the L∞ ball of radius ε and [0, 1]; a sample stops as soon as its prediction leaves "
        "its true class (per-sample early stop, the batch keeps its shape).",
        "",
        f"{config.method.upper()}: {METHODS[config.method].summary}.",
        "",
        "Success rate, mean iterations and mean confidence drop are measured on the *attacked* images "
        "(classified correctly before the attack); mean iterations over the successful ones; the confidence "
        "drop is the true-class probability before minus after; robust accuracy is over all images.",
        "",
        sweep_md,
        "![metrics against ε](sweep.png)",
        "",
        f"## Examples at ε = {eps_label(config.example_eps)}",
        "",
        "Perturbations are amplified so that ±ε spans black to white.",
        "",
        "![examples](examples.png)",
        "",
        *comparison_section(compare(config, results)),
        *environment_section(results, f"{results['cached_runs']} attack run(s) reused from cache"),
    ]
    return "\n".join(lines)


# Madry et al. 2018, Table 2: a naturally trained wide ResNet on CIFAR-10 under PGD (7 steps of 2/255, ε = 8/255).
MADRY_2018_NATURAL_PGD_ACCURACY = 0.035


def compare(config: FGSMConfig, results: dict[str, Any]) -> list[Comparison]:
    """The write-up's finding (larger ε, stronger attack) and a standard model's accuracy under attack at 8/255."""
    sweep = sorted(results["sweep"], key=lambda r: r["eps_255"])
    rates = [r["success_rate"] for r in sweep]
    rows = [
        Comparison.claim(
            "a larger ε gives a more successful attack",
            all(b >= a for a, b in zip(rates, rates[1:], strict=False)),
            ", ".join(f"{eps_label(r['eps_255'])}: {r['success_rate']:.3f}" for r in sweep),
        )
    ]
    at_8 = next((r for r in sweep if r["eps_255"] == 8), None)
    if at_8 is not None and config.method != "fgsm":
        rows.append(
            Comparison(
                "robust accuracy of an undefended model at ε = 8/255",
                ours=at_8["robust_accuracy"],
                literature=MADRY_2018_NATURAL_PGD_ACCURACY,
                source=f"Madry et al. 2018 (wide ResNet, PGD-7); ours: {results['victim']['name']}, "
                f"{config.method.upper()}-{config.steps}",
            )
        )
    return rows


STUDY = Study(
    name="fgsm",
    summary="Iterative FGSM with per-sample early stop on a CIFAR-10 model: success, iterations, confidence vs ε.",
    default_config=FGSMConfig,
    profiles={
        "quick": {"test_subset": 1000, "epsilons": (0.5, 1, 2, 4, 8, 16)},
        "full": {},
    },
    run=run,
    compare=compare,
)
