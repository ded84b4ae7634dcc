"""Study ``adv-train``: what does adversarial training buy, and what does it cost in clean accuracy?

A standard CIFAR-10 model and adversarially trained ones — loss ``w_clean · CE(clean) + w_adv · CE(adv)``
for each weighting, adversarial batches made on the fly by FGSM from a random start (Wong et al. 2020) by
default — are trained with the same recipe, then evaluated: clean accuracy, and robust accuracy under
FGSM (a gap to PGD flags catastrophic overfitting) and PGD with random start. The course write-up trained
with 0.5/0.5 and 0.2/0.8; Wong et al. report 86.1% clean / 46.1% PGD accuracy at ε = 8/255 for a PreAct
ResNet-18.

Every evaluation is one function in :data:`EVALUATIONS` (model, test data, config -> named metrics); the
table, figure and cache keys follow that registry, so a further evaluation of the trained models is one
more function there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dlapps.attacks import AdversarialStepLoss, attack_arrays, clean_accuracy, robust_accuracy
from dlapps.config import require, to_dict
from dlapps.data import ImageArrays, load_arrays
from dlapps.data.ood import cifar100_ood
from dlapps.experiments.attack_common import PIXEL, eps_label
from dlapps.experiments.base import RunCache, RunContext, Study, environment_section, study_results
from dlapps.experiments.zoo import ClassifierRecipe, obtain_classifier
from dlapps.ood import MSP, aupr_in, auroc, fit_detectors, score_detectors
from dlapps.report import figures
from dlapps.report.comparison import Comparison, comparison_section
from dlapps.report.io import save_figure, staged_output, write_csv, write_json, write_text
from dlapps.report.markdown import format_number, table
from dlapps.train import TrainConfig
from dlapps.train.trainer import cross_entropy_step

WONG_2020 = {"clean accuracy": 0.861, "PGD accuracy": 0.461}  # PreAct ResNet-18, FGSM-RS, ε = 8/255
# The course write-up's small CNN: MSP (AUROC, area under its PR curve) against its CIFAR-100 subset.
WRITEUP_OOD = {"standard": (0.63, 0.85), "0.5/0.5": (0.65, 0.87)}


@dataclass(frozen=True)
class AdvTrainConfig:
    model: Literal["small_cnn", "cifar_resnet"] = "cifar_resnet"
    width: int = 64  # channels of the first stage, doubled at each later stage (small_cnn: hidden 4·width)
    blocks: int = 3  # cifar_resnet only: basic blocks per stage
    method: Literal["fgsm", "fgsm-rs", "pgd"] = "fgsm-rs"
    eps: float = 8.0  # grey levels (units of 1/255)
    alpha: float | None = None  # grey levels; None: fgsm ε, fgsm-rs 1.25 ε, pgd 2.5 ε / steps
    steps: int = 1  # attack steps per batch (pgd only)
    weightings: tuple[str, ...] = ("0.5/0.5", "0.2/0.8", "0/1")  # w_clean/w_adv, beside a standard model
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=15, batch_size=128, optimizer="sgd", lr=0.2, momentum=0.9, weight_decay=5e-4, schedule="onecycle"
        )
    )
    train_subset: int | None = None  # None: all 50,000 training images
    test_subset: int | None = None  # None: all 10,000 test images
    eval_eps: float = 8.0  # grey levels
    eval_alpha: float = 2.0  # grey levels, PGD step
    eval_steps: tuple[int, ...] = (10, 20)
    eval_batch_size: int = 500
    seed: int = 0

    def validate(self) -> None:
        require(
            self.width > 0 and self.blocks > 0, f"width and blocks must be positive, got {self.width}, {self.blocks}"
        )
        require(self.eps >= 0 and self.eval_eps >= 0, "eps and eval_eps must be >= 0 (grey levels)")
        require(self.alpha is None or self.alpha > 0, f"alpha must be positive or none, got {self.alpha}")
        require(self.method == "pgd" or self.steps == 1, f"{self.method} takes one step: set steps=1 (or method=pgd)")
        require(self.steps > 0, f"steps must be positive, got {self.steps}")
        require(len(self.weightings) == len(set(self.weightings)), f"weightings repeat an entry: {self.weightings}")
        for weighting in self.weightings:
            parts = weighting.split("/")
            numbers = [p for p in parts if p.replace(".", "", 1).isdigit()]
            require(
                len(parts) == 2 and len(numbers) == 2 and float(parts[1]) > 0,
                f"weighting {weighting!r} must be w_clean/w_adv with w_clean >= 0 and w_adv > 0, e.g. 0.5/0.5",
            )
        require(self.eval_alpha > 0, f"eval_alpha must be positive, got {self.eval_alpha}")
        require(len(self.eval_steps) > 0 and all(s > 0 for s in self.eval_steps), "eval_steps must be positive")
        for key in ("train_subset", "test_subset"):
            value = getattr(self, key)
            require(value is None or value > 0, f"{key} must be positive or none, got {value}")
        require(self.eval_batch_size > 0, f"eval_batch_size must be positive, got {self.eval_batch_size}")

    def objectives(self) -> dict[str, AdversarialStepLoss | None]:
        """Variant label -> its adversarial step loss (None: standard training)."""
        found: dict[str, AdversarialStepLoss | None] = {"standard": None}
        for weighting in self.weightings:
            w_clean, w_adv = (float(w) for w in weighting.split("/"))
            found[f"{self.method} {weighting}"] = AdversarialStepLoss(
                method=self.method,
                eps=self.eps * PIXEL,
                alpha=None if self.alpha is None else self.alpha * PIXEL,
                steps=self.steps,
                w_clean=w_clean,
                w_adv=w_adv,
            )
        return found

    def recipe(self, loss: AdversarialStepLoss | None) -> ClassifierRecipe:
        w = self.width
        if self.model == "cifar_resnet":
            hparams = (("blocks", self.blocks), ("widths", (w, 2 * w, 4 * w)))
        else:
            hparams = (("channels", (w, 2 * w)), ("hidden", 4 * w))
        return ClassifierRecipe(
            model=self.model,
            hparams=hparams,
            train=self.train,
            train_subset=self.train_subset,
            test_subset=self.test_subset,
            seed=self.seed,
            objective="cross-entropy" if loss is None else loss.objective,
        )


def robustness(model: nn.Module, test: ImageArrays, config: AdvTrainConfig, ctx: RunContext) -> dict[str, float]:
    """Clean accuracy, and robust accuracy under FGSM and under PGD of each ``eval_steps`` with random start.

    PGD stops a sample once it is misclassified, so a sample counts as robust only if no step fooled it.
    """
    eps, batch = config.eval_eps * PIXEL, config.eval_batch_size
    fgsm = attack_arrays(model, test, method="fgsm", eps=eps, batch_size=batch, early_stop=False)
    metrics = {"clean accuracy": clean_accuracy(fgsm), "FGSM accuracy": robust_accuracy(fgsm)}
    for steps in config.eval_steps:
        pgd = attack_arrays(
            model,
            test,
            method="pgd",
            eps=eps,
            alpha=config.eval_alpha * PIXEL,
            steps=steps,
            batch_size=batch,
            generator=torch.Generator().manual_seed(config.seed),
        )
        metrics[f"PGD-{steps} accuracy"] = robust_accuracy(pgd)
    return metrics


def ood_detection(model: nn.Module, test: ImageArrays, config: AdvTrainConfig, ctx: RunContext) -> dict[str, float]:
    """MSP's AUROC and AUPR-In, CIFAR-10 test (ID) vs as many images of the CIFAR-100 subset (OOD)."""
    ood = cifar100_ood(ctx.data_root, ctx.download).subset(len(test), config.seed)
    detector = {"msp": MSP()}
    fit_detectors(detector, model, None)
    id_scores = score_detectors(detector, test).scores["msp"]
    ood_scores = score_detectors(detector, ood).scores["msp"]
    return {
        "MSP AUROC (CIFAR-100)": auroc(id_scores, ood_scores),
        "MSP AUPR-In (CIFAR-100)": aupr_in(id_scores, ood_scores),
    }


Evaluation = Callable[[nn.Module, ImageArrays, AdvTrainConfig, RunContext], dict[str, float]]
EVALUATIONS: dict[str, Evaluation] = {"robustness": robustness, "ood": ood_detection}


def run(config: AdvTrainConfig, ctx: RunContext) -> dict[str, Any]:
    started = time.perf_counter()
    train = load_arrays("cifar10", "train", ctx.data_root, ctx.download)
    full_test = load_arrays("cifar10", "test", ctx.data_root, ctx.download)
    test = full_test.subset(config.test_subset, config.seed)
    cache = RunCache(ctx.out / "runs")
    records = []
    with ctx.progress() as progress:
        for variant, loss in config.objectives().items():
            recipe = config.recipe(loss)
            progress.console.print(f"{variant}: training {recipe.key()} (or loading it)")
            t0 = time.perf_counter()
            model, info = obtain_classifier(
                recipe,
                ctx,
                progress=progress,
                step_loss=cross_entropy_step if loss is None else loss,
                train=train,
                test=full_test,
            )
            record = _evaluate(cache, variant, recipe, model, test, config, ctx)
            record = {
                **record,
                "objective": recipe.objective,
                "train_seconds": sum(h["seconds"] for h in info["history"]),
                "history": info["history"],
                "seconds": time.perf_counter() - t0,
            }
            records.append(record)
            summary = ", ".join(f"{name} {value:.3f}" for name, value in record["metrics"].items())
            progress.console.print(f"{variant}: {summary}")
    results = study_results(
        "adv-train",
        config,
        ctx,
        started,
        data={"train": train.source, "test": test.source, "test_size": len(test)},
        variants=records,
        cached_runs=cache.hits,
    )
    with staged_output(ctx.out) as stage:
        _write_artifacts(stage, config, results)
    return results


def _evaluate(
    cache: RunCache,
    variant: str,
    recipe: ClassifierRecipe,
    model: nn.Module,
    test: ImageArrays,
    config: AdvTrainConfig,
    ctx: RunContext,
) -> dict[str, Any]:
    """Every evaluation of :data:`EVALUATIONS` on one trained model, cached by model, data and settings."""
    settings = {
        "model": recipe.key(),
        "evaluations": list(EVALUATIONS),
        "data": {"source": test.source, "n": len(test), "seed": config.seed},
        "eval": {k: to_dict(config)[k] for k in ("eval_eps", "eval_alpha", "eval_steps", "seed")},
    }
    key = cache.key(variant.replace(" ", "-").replace("/", "-"), settings)
    record = cache.get(key)
    if record is None:
        metrics: dict[str, float] = {}
        for evaluation in EVALUATIONS.values():
            metrics.update(evaluation(model, test, config, ctx))
        record = {"key": key, "variant": variant, "model": recipe.key(), "metrics": metrics}
        cache.put(key, record)
    return record


def _write_artifacts(stage: Path, config: AdvTrainConfig, results: dict[str, Any]) -> None:
    records = results["variants"]
    write_json(stage / "results.json", results)
    write_csv(
        stage / "results.csv",
        [{"variant": r["variant"], **r["metrics"], "train_seconds": r["train_seconds"]} for r in records],
    )
    results_md = _table(records)
    write_text(stage / "table.md", results_md)
    save_figure(
        figures.grouped_bars(
            {f"ε = {eps_label(config.eval_eps)}": {r["variant"]: r["metrics"] for r in records}},
            xlabel="training",
            title=f"{_model_label(config)} on CIFAR-10: accuracy, clean and under attack",
            ylims={f"ε = {eps_label(config.eval_eps)}": (0, 1.05)},
            width=max(6.0, 2.6 * len(records)),
        ),
        stage / "robustness.png",
    )
    if config.train.epochs > 1:
        save_figure(
            figures.curves_grid(
                {
                    "test accuracy (clean)": {r["variant"]: [[h["test_acc"] for h in r["history"]]] for r in records},
                    "train accuracy\n(on adversarial batches where trained on them)": {
                        r["variant"]: [[h["train_acc"] for h in r["history"]]] for r in records
                    },
                },
                ylabel="accuracy",
            ),
            stage / "training.png",
        )
    write_text(stage / "report.md", _report(config, results, results_md))


def _model_label(config: AdvTrainConfig) -> str:
    if config.model == "cifar_resnet":
        return f"ResNet-{6 * config.blocks + 2} (widths {config.width}/{2 * config.width}/{4 * config.width})"
    return f"small CNN (channels {config.width}/{2 * config.width})"


def _table(records: list[dict[str, Any]]) -> str:
    metrics = list(dict.fromkeys(name for r in records for name in r["metrics"]))
    return table(
        ["training", *metrics, "training time (s)"],
        [
            [r["variant"], *(format_number(r["metrics"].get(m)) for m in metrics), f"{r['train_seconds']:.0f}"]
            for r in records
        ],
    )


def _report(config: AdvTrainConfig, results: dict[str, Any], results_md: str) -> str:
    t = config.train
    losses = [loss for loss in config.objectives().values() if loss is not None]
    attack_line = (
        f"{config.method} at ε = {eps_label(config.eps)}, {config.steps} step(s) of "
        f"{losses[0].step_size / PIXEL:.3g}/255"
        if losses
        else "none"
    )
    lines = [
        "# Adversarial training",
        "",
        f"{_model_label(config)} trained on {config.train_subset or 50_000} CIFAR-10 training images for "
        f"{t.epochs} epochs ({t.optimizer}, lr {t.lr}, {t.schedule} schedule, weight decay {t.weight_decay}, batch "
        f"{t.batch_size}, random crop and flip). Adversarial batches: {attack_line}, made on the fly with the "
        "model in train mode (Wong et al.). Loss: `w_clean · CE(clean) + w_adv · CE(adversarial)`, the "
        "weighting in the row label; *standard* is plain cross-entropy.",
        "",
        f"Evaluated on {results['data']['test_size']} CIFAR-10 test images at ε = {eps_label(config.eval_eps)}: "
        f"FGSM, and PGD with random start and step {config.eval_alpha:g}/255, each image stopping once "
        "misclassified (so it counts as robust only if no step fooled it). Reference: Wong et al. 2020, "
        f"{WONG_2020['clean accuracy']:.1%} clean / {WONG_2020['PGD accuracy']:.1%} PGD accuracy for a PreAct "
        "ResNet-18 with FGSM-RS at 8/255.",
        "",
        results_md,
        "![accuracy under attack](robustness.png)",
        "",
        "![training curves](training.png)" if config.train.epochs > 1 else "",
        "",
        *comparison_section(compare(config, results)),
        *environment_section(results, f"{results['cached_runs']} evaluation(s) reused from cache"),
    ]
    return "\n".join(lines)


def compare(config: AdvTrainConfig, results: dict[str, Any]) -> list[Comparison]:
    """The write-up's OOD numbers and findings per weighting; Wong et al.'s accuracies for pure FGSM-RS."""
    metrics = {r["variant"]: r["metrics"] for r in results["variants"]}
    by_weighting = {v.rsplit(" ", 1)[-1]: m for v, m in metrics.items()}  # "standard" stays "standard"
    auroc, aupr = "MSP AUROC (CIFAR-100)", "MSP AUPR-In (CIFAR-100)"
    rows = []
    for weighting, (writeup_auroc, writeup_aupr) in WRITEUP_OOD.items():
        if weighting in by_weighting and auroc in by_weighting[weighting]:
            rows += [
                Comparison(f"{weighting}: {auroc}", ours=by_weighting[weighting][auroc], writeup=writeup_auroc),
                Comparison(f"{weighting}: {aupr}", ours=by_weighting[weighting][aupr], writeup=writeup_aupr,
                           source="the write-up's PR curve does not say which class is positive"),
            ]  # fmt: skip
    standard, even, skewed = (by_weighting.get(w, {}).get(auroc) for w in ("standard", "0.5/0.5", "0.2/0.8"))
    if standard is not None and even is not None:
        rows.append(
            Comparison.claim(
                "0.5/0.5 adversarial training improves OOD detection over standard training (~2 points)",
                even > standard,
                f"MSP AUROC {even:.3f} vs {standard:.3f}",
            )
        )
    if even is not None and skewed is not None:
        rows.append(
            Comparison.claim(
                "0.2/0.8 detects OOD slightly worse than 0.5/0.5", skewed < even, f"AUROC {skewed:.3f} vs {even:.3f}"
            )
        )
    pure = by_weighting.get("0/1")
    if pure is not None and config.method == "fgsm-rs" and config.eval_eps == 8:
        pgd = f"PGD-{max(config.eval_steps)} accuracy"
        source = f"Wong et al. 2020, PreAct ResNet-18, 15 epochs; ours: {_model_label(config)}, {config.train.epochs}"
        rows += [
            Comparison("FGSM-RS 0/1: clean accuracy", ours=pure["clean accuracy"],
                       literature=WONG_2020["clean accuracy"], source=source + " epochs"),
            Comparison(f"FGSM-RS 0/1: {pgd} at 8/255", ours=pure.get(pgd), literature=WONG_2020["PGD accuracy"],
                       source=source + " epochs; theirs PGD-50 with 10 restarts"),
        ]  # fmt: skip
    return rows


STUDY = Study(
    name="adv-train",
    summary="Standard vs adversarially trained CIFAR-10 models (FGSM-RS, weighted losses): clean and PGD accuracy.",
    default_config=AdvTrainConfig,
    profiles={
        "quick": {
            "model": "small_cnn",
            "width": 16,
            "train_subset": 5000,
            "test_subset": 500,
            "train.epochs": 4,
            "train.optimizer": "adam",
            "train.lr": 1e-3,
            "train.schedule": "constant",
            "train.weight_decay": 0.0,
        },
        "full": {},
    },
    run=run,
    compare=compare,
)
