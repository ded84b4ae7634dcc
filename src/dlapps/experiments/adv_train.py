"""Study ``adv-train``: what does adversarial training buy, and what does it cost in clean accuracy?

A standard model and adversarially trained ones (on CIFAR-10 by default) — loss ``w_clean · CE(clean) + w_adv · CE(adv)``
for each weighting, adversarial batches made on the fly by FGSM from a random start (Wong et al. 2020) by
default — are trained with the same recipe, then evaluated: clean accuracy, and robust accuracy under
FGSM (a gap to PGD flags catastrophic overfitting) and PGD with random start, and MSP's OOD detection
against an OOD set. The course write-up trained with 0.5/0.5 and 0.2/0.8; Wong et al. report 86.1% clean /
46.1% PGD accuracy at ε = 8/255 for a PreAct ResNet-18.

Every evaluation is one function registered in :data:`EVALUATIONS` (model, test data, config, context ->
named metrics); the table, figure and cache keys follow that registry, so a further evaluation of the
trained models is one more function there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from torch import nn

from dlapps.attacks import (
    ATTACKS,
    PIXEL,
    TARGETING_METRICS,
    AdversarialStepLoss,
    Attack,
    eps_label,
    make_attack,
    robust_accuracies,
    targeted_against_untargeted,
)
from dlapps.config import GreyLevels, PositiveFloat, PositiveInt, require, to_dict
from dlapps.data import DATASETS, ImageArrays, get_dataset
from dlapps.data.ood import OOD_SET, OodChoice, OodRequest, choose_ood_sets, load_chosen, set_label
from dlapps.experiments.base import STUDIES, OnDataset, RunContext, Study, StudyOutput
from dlapps.models.layout import inference_batch
from dlapps.models.registry import ARCHITECTURE, architecture_title, non_default
from dlapps.ood import MSP, evaluate_detectors
from dlapps.registry import Registry
from dlapps.report import figures
from dlapps.report.comparison import Comparison
from dlapps.report.markdown import Image, format_mean_std, mean_std, table
from dlapps.train import ClassifierRecipe, TrainConfig, Training
from dlapps.train.trainer import cross_entropy_step
from dlapps.train.writeup import WRITEUP_CNN_TRAINING

WONG_2020 = {"clean accuracy": 0.861, "PGD accuracy": 0.461}  # PreAct ResNet-18, FGSM-RS, ε = 8/255
# The course write-up's small CNN: MSP (AUROC, area under its PR curve) against its CIFAR-100 subset.
WRITEUP_OOD = {"standard": (0.63, 0.85), "0.5/0.5": (0.65, 0.87)}


@dataclass(frozen=True)
class AdvTrainConfig(OnDataset):
    model: Annotated[str, ARCHITECTURE] = "cifar_resnet"  # any architecture; width and blocks shape two of them
    width: PositiveInt = 64  # cifar_resnet / small_cnn: channels of the first stage, doubled at each later stage
    blocks: PositiveInt = 3  # cifar_resnet only: basic blocks per stage
    method: Annotated[str, ATTACKS] = "fgsm-rs"  # any registered attack makes the adversarial batches
    eps: GreyLevels = 8.0  # grey levels (units of 1/255)
    alpha: GreyLevels | None = None  # grey levels; None: the attack's own (fgsm ε, fgsm-rs 1.25 ε, pgd 2.5 ε / steps)
    steps: PositiveInt = 1  # attack steps per batch (iterative attacks only)
    weightings: tuple[str, ...] = ("0.5/0.5", "0.2/0.8", "0/1")  # w_clean/w_adv, beside a standard model
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=15, batch_size=128, optimizer="sgd", lr=0.2, momentum=0.9, weight_decay=5e-4, schedule="onecycle"
        )
    )
    train_subset: PositiveInt | None = None  # None: the whole training split
    test_subset: PositiveInt | None = None  # None: the whole test split
    eval_subset: PositiveInt | None = None  # test images the evaluations attack and score (None: test_subset's)
    augment: bool = True  # random crop and flip of the training images
    seeds: PositiveInt = 1  # models per variant, trained from seeds seed, seed + 1, ...
    evaluations: tuple[Annotated[str, EVALUATIONS], ...] = ("robustness", "ood")
    eval_eps: GreyLevels = 8.0  # grey levels
    eval_attacks: tuple[Annotated[str, ATTACKS], ...] = ("fgsm", "pgd", "apgd-ce")  # side by side, at eval_eps
    eval_alpha: GreyLevels = 2.0  # grey levels, the step of PGD, BIM, MI-FGSM (the others set their own)
    eval_steps: tuple[PositiveInt, ...] = (10, 20)  # of each iterative attack
    eval_batch_size: PositiveInt | None = None  # images per forward pass (None: as many as run fastest)
    # MSP's OOD detection is measured against it (None: the first near-OOD set that suits the dataset, else far)
    ood_set: Annotated[str, OOD_SET] | None = None
    resize_ood: bool = False  # resize / convert a user's OOD images that do not fit
    attack_eps: GreyLevels = 1.0  # targeting: untargeted against targeted iterative FGSM at this ε ...
    attack_steps: PositiveInt = 10  # ... with at most this many steps ...
    attack_alpha_fraction: PositiveFloat = 0.25  # ... of this fraction of ε each
    seed: int = 0

    def validate(self) -> None:
        require(not ATTACKS[self.method].single_step or self.steps == 1,
                f"{self.method} takes one step: set steps=1 (or method=pgd)")  # fmt: skip
        require(len(self.weightings) == len(set(self.weightings)), f"weightings repeat an entry: {self.weightings}")
        for weighting in self.weightings:
            parts = weighting.split("/")
            numbers = [p for p in parts if p.replace(".", "", 1).isdigit()]
            require(
                len(parts) == 2 and len(numbers) == 2 and float(parts[1]) > 0,
                f"weighting {weighting!r} must be w_clean/w_adv with w_clean >= 0 and w_adv > 0, e.g. 0.5/0.5",
            )
        require(len(self.eval_steps) > 0, "eval_steps must not be empty")
        require(len(self.evaluations) > 0, "evaluations must not be empty")
        require(self.eval_subset is None or self.test_subset is None or self.eval_subset <= self.test_subset,
                f"eval_subset={self.eval_subset} exceeds test_subset={self.test_subset}")  # fmt: skip

    def objectives(self) -> dict[str, AdversarialStepLoss | None]:
        """Variant label -> its adversarial step loss (None: standard training)."""
        found: dict[str, AdversarialStepLoss | None] = {"standard": None}
        for weighting in self.weightings:
            w_clean, w_adv = (float(w) for w in weighting.split("/"))
            found[f"{self.method} {weighting}"] = AdversarialStepLoss(
                method=self.method, eps=self.eps * PIXEL, alpha=None if self.alpha is None else self.alpha * PIXEL,
                steps=self.steps, w_clean=w_clean, w_adv=w_adv,
            )  # fmt: skip
        return found

    def eval_attacks_by_label(self) -> dict[str, Attack]:
        """``FGSM``, ``PGD-10``, ``APGD-CE-20``...: each evaluation attack at ``eval_eps``, with each of
        ``eval_steps`` for an iterative one."""
        found = {}
        for name in self.eval_attacks:
            alpha = None if ATTACKS[name].sets_own_step() else self.eval_alpha * PIXEL
            for steps in (1,) if ATTACKS[name].single_step else self.eval_steps:
                label = name.upper() if ATTACKS[name].single_step else f"{name.upper()}-{steps}"
                found[label] = make_attack(name, eps=self.eval_eps * PIXEL, steps=steps, alpha=alpha)
        return found

    def ood_choice(self) -> OodChoice:
        if self.ood_set is not None:
            return choose_ood_sets(self.dataset, (self.ood_set,))[0][0]
        chosen = choose_ood_sets(self.dataset)[0]
        return next((c for c in chosen if c.distance == "near"), chosen[0])

    def hparams(self) -> dict[str, Any]:
        w = self.width
        if self.model == "cifar_resnet":
            return {"blocks": self.blocks, "widths": (w, 2 * w, 4 * w)}
        return {"channels": (w, 2 * w), "hidden": 4 * w} if self.model == "small_cnn" else {}

    def recipe(self, loss: AdversarialStepLoss | None, seed: int) -> ClassifierRecipe:
        """The recipe of one variant and seed; the standard one is the model other studies name the same way."""
        return ClassifierRecipe(
            self.model, tuple(non_default(self.model, self.hparams()).items()), self.dataset, self.image_size,
            self.train, self.train_subset, self.test_subset, self.augment, seed,
            objective="cross-entropy" if loss is None else loss.objective,
        )  # fmt: skip

    def model_label(self) -> str:
        widths = self.hparams().get("widths") or self.hparams().get("channels")
        return architecture_title(self.model, self.hparams()) + (
            f" (widths {'/'.join(map(str, widths))})" if widths else ""
        )


def set_title(choice: OodChoice) -> str:
    return DATASETS[choice.name].title if choice.name in DATASETS else set_label(choice.entry)


def load_ood(config: AdvTrainConfig, ctx: RunContext, test: ImageArrays) -> ImageArrays:
    """The OOD set, as many images as ``test``, at its shape (a user's set that does not fit is refused)."""
    request = OodRequest(ctx.data_root, ctx.download, len(test), config.seed, test.image_shape, config.dataset,
                         test.classes)  # fmt: skip
    return load_chosen(config.ood_choice(), request, resize=config.resize_ood)


Evaluation = Callable[[nn.Module, ImageArrays, AdvTrainConfig, RunContext], dict[str, float]]
EVALUATIONS: Registry[Evaluation] = Registry("evaluation")


def _eval_batch(config: AdvTrainConfig, test: ImageArrays, ctx: RunContext) -> int:
    return config.eval_batch_size or inference_batch(test.image_shape, ctx.device)


@EVALUATIONS.register("robustness")
def robustness(model: nn.Module, test: ImageArrays, config: AdvTrainConfig, ctx: RunContext) -> dict[str, float]:
    """Clean accuracy, and robust accuracy under each evaluation attack (PGD and APGD side by side show the gap
    between the usual attack and the stronger one)."""
    return robust_accuracies(model, test, config.eval_attacks_by_label(), batch_size=_eval_batch(config, test, ctx),
                             seed=config.seed)  # fmt: skip


@EVALUATIONS.register("ood")
def ood_detection(model: nn.Module, test: ImageArrays, config: AdvTrainConfig, ctx: RunContext) -> dict[str, float]:
    """MSP's AUROC and AUPR-In, the test images (ID) against as many images of the OOD set."""
    ood = load_ood(config, ctx, test)
    metrics = evaluate_detectors({"msp": MSP()}, model, None, test, {"ood": ood}).records({"ood": "user"})[0]
    name = set_title(config.ood_choice())
    return {f"MSP AUROC ({name})": metrics["auroc"], f"MSP AUPR-In ({name})": metrics["aupr_in"]}


@EVALUATIONS.register("targeting")
def targeting(model: nn.Module, test: ImageArrays, config: AdvTrainConfig, ctx: RunContext) -> dict[str, float]:
    """The write-up's comparison: untargeted and targeted (a random other class) iterative FGSM at ``attack_eps``
    with at most ``attack_steps`` steps and per-sample early stop."""
    eps = config.attack_eps * PIXEL
    return targeted_against_untargeted(model, test, eps=eps, alpha=config.attack_alpha_fraction * eps,
                                       steps=config.attack_steps, batch_size=_eval_batch(config, test, ctx),
                                       seed=config.seed)  # fmt: skip


def exceeds(first: list[float], second: list[float]) -> tuple[bool, str]:
    """Whether ``first`` is larger than ``second`` by more than their spread over seeds (by anything, for single
    runs), and the evidence in words."""
    (a, sa), (b, sb) = mean_std(first), mean_std(second)
    if len(first) < 2 or len(second) < 2:
        return a > b, f"{a:.3f} vs {b:.3f}"
    holds = a - b > sa + sb
    return holds, (f"{a:.3f} ± {sa:.3f} vs {b:.3f} ± {sb:.3f} over {len(first)} seeds"
                   + ("" if holds or a <= b else "; the difference is within the spread over seeds"))  # fmt: skip


@STUDIES.register("adv-train")
class AdvTrain(Study):
    summary = "Standard vs adversarially trained models (CIFAR-10 by default; FGSM-RS, weighted losses): clean and PGD accuracy."
    config_type = AdvTrainConfig
    profiles = {
        "quick": {"model": "small_cnn", "width": 16, "train_subset": 5000, "test_subset": 500, "train.epochs": 4,
                  "train.optimizer": "adam", "train.lr": 1e-3, "train.schedule": "constant", "train.weight_decay": 0.0},
        "full": {},
        # The write-up: FGSM on its small CNN, 0.5/0.5 and 0.2/0.8, judged by MSP against CIFAR-100; and its
        # targeted-vs-untargeted comparison at 1/255 and 10 steps, here on the standard and the trained models
        # alike and over seeds, to test its explanation. The training ε is not given there: 1/255, its attacks'.
        "writeup": {"model": "small_cnn", "width": 32, "method": "fgsm", "eps": 1.0, "weightings": ("0.5/0.5", "0.2/0.8"),
                    **{f"train.{k}": v for k, v in to_dict(WRITEUP_CNN_TRAINING).items()}, "augment": False,
                    "seeds": 3, "evaluations": ("robustness", "ood", "targeting"), "eval_subset": 2000, "eval_eps": 1.0,
                    "eval_alpha": 0.25, "eval_steps": (10,), "attack_eps": 1.0, "attack_steps": 10},
    }  # fmt: skip
    exercise = (4, "2.2", "adversarial training")

    def default_ood_sets(self, config: AdvTrainConfig) -> list[str]:
        return [config.ood_choice().entry] if config.ood_set is None and "ood" in config.evaluations else []

    def run(self, config: AdvTrainConfig, ctx: RunContext) -> StudyOutput:
        dataset = get_dataset(config.dataset)
        train, full_test = config.load(ctx, "train"), config.load(ctx)
        test = full_test.subset(config.eval_subset or config.test_subset, config.seed)
        if "ood" in config.evaluations:
            load_ood(config, ctx, test)  # an OOD set that does not fit fails now, not after the training
        records = []
        with ctx.progress() as progress:
            ctx.train_in_workers(
                [Training(f"{variant}, seed {seed}", config.recipe(loss, seed), loss or cross_entropy_step)
                 for seed in range(config.seed, config.seed + config.seeds)
                 for variant, loss in config.objectives().items()],
                train, full_test, progress,
            )  # fmt: skip
            for seed in range(config.seed, config.seed + config.seeds):
                for variant, loss in config.objectives().items():
                    recipe = config.recipe(loss, seed)
                    progress.console.print(f"{variant}, seed {seed}: training {recipe.key()} (or loading it)")
                    t0 = time.perf_counter()
                    step_loss = cross_entropy_step if loss is None else loss
                    classifier = ctx.classifier(recipe, progress=progress, step_loss=step_loss, train=train,
                                                test=full_test)  # fmt: skip
                    history = classifier.info["history"]
                    records.append({**self._evaluate(variant, recipe, classifier.module, test, config, ctx),
                                    "seed": seed, "objective": recipe.objective,
                                    "train_seconds": sum(h["seconds"] for h in history), "history": history,
                                    "seconds": time.perf_counter() - t0})  # fmt: skip
                    summary = ", ".join(f"{name} {value:.3f}" for name, value in records[-1]["metrics"].items()
                                        if value is not None)  # fmt: skip
                    progress.console.print(f"{variant}, seed {seed}: {summary}")
        results = {
            "data": {"dataset": config.dataset, "title": dataset.title, "train": train.source, "test": test.source,
                     "test_size": len(test)},
            "variants": records,
        }  # fmt: skip
        rows = [{"variant": r["variant"], "seed": r["seed"], **r["metrics"], "train_seconds": r["train_seconds"]}
                for r in records]  # fmt: skip
        return StudyOutput(results, rows, self._figures(config, results))

    def _evaluate(self, variant: str, recipe: ClassifierRecipe, model: nn.Module, test: ImageArrays,
                  config: AdvTrainConfig, ctx: RunContext) -> dict[str, Any]:  # fmt: skip
        """The configured evaluations of :data:`EVALUATIONS` on one trained model, cached by model, data and
        settings."""
        settings = {
            "model": recipe.key(),
            "evaluations": list(config.evaluations),
            "data": {"source": test.source, "n": len(test), "seed": config.seed},
            "eval": {**{k: to_dict(config)[k] for k in ("eval_eps", "eval_attacks", "eval_alpha", "eval_steps",
                                                        "resize_ood", "seed")},
                     "ood_set": config.ood_choice().entry},
            **({"targeting": {k: to_dict(config)[k] for k in ("attack_eps", "attack_steps", "attack_alpha_fraction")}}
               if "targeting" in config.evaluations else {}),
        }  # fmt: skip

        def evaluate(key: str) -> dict[str, Any]:
            metrics: dict[str, float] = {}
            for name in config.evaluations:
                metrics.update(EVALUATIONS[name](model, test, config, ctx))
            return {"key": key, "variant": variant, "model": recipe.key(), "metrics": metrics}

        return ctx.cache.get_or_compute(variant.replace(" ", "-").replace("/", "-"), settings, evaluate)

    @staticmethod
    def by_variant(results: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
        """Variant -> metric -> its value for each seed (undefined values left out)."""
        found: dict[str, dict[str, list[float]]] = {}
        for record in results["variants"]:
            metrics = found.setdefault(record["variant"], {})
            for name, value in record["metrics"].items():
                metrics.setdefault(name, [])
                if value is not None:
                    metrics[name].append(value)
        return found

    def _figures(self, config: AdvTrainConfig, results: dict[str, Any]) -> dict[str, Any]:
        variants, eps = self.by_variant(results), f"ε = {eps_label(config.eval_eps)}"
        means = {v: {m: mean_std(values)[0] if values else None for m, values in metrics.items()}
                 for v, metrics in variants.items()}  # fmt: skip
        found = {}
        if "robustness" in config.evaluations or "ood" in config.evaluations:
            shown = {v: {m: x for m, x in metrics.items() if not m.startswith(("untargeted", "targeted"))}
                     for v, metrics in means.items()}  # fmt: skip
            found["robustness.png"] = figures.grouped_bars(
                {eps: shown}, xlabel="training", ylims={eps: (0, 1.05)}, width=max(6.0, 2.6 * len(shown)),
                title=f"{config.model_label()} on {results['data']['title']}: accuracy, clean and under attack"
                      + (f" (mean of {config.seeds} seeds)" if config.seeds > 1 else ""),
            )  # fmt: skip
        if "targeting" in config.evaluations:
            panels = {label: {v: {mode: m.get(f"{mode} {label}") for mode in ("untargeted", "targeted")}
                              for v, m in means.items()} for label in TARGETING_METRICS.values()}  # fmt: skip
            found["targeting.png"] = figures.grouped_bars(
                panels, xlabel="training", ylims={"success rate": (0, 1.12), "mean confidence drop": (0, 1.12)},
                title=f"untargeted and targeted iterative FGSM at ε = {eps_label(config.attack_eps)}, at most "
                      f"{config.attack_steps} steps" + (f" (mean of {config.seeds} seeds)" if config.seeds > 1 else ""),
            )  # fmt: skip
        if config.train.epochs > 1:
            histories: dict[str, list] = {}
            for r in results["variants"]:
                histories.setdefault(r["variant"], []).append(r["history"])
            found["training.png"] = figures.curves_grid(
                {"test accuracy (clean)": {v: [[h["test_acc"] for h in run] for run in runs]
                                           for v, runs in histories.items()},
                 "train accuracy\n(on adversarial batches where trained on them)":
                     {v: [[h["train_acc"] for h in run] for run in runs] for v, runs in histories.items()}},
                ylabel="accuracy",
            )  # fmt: skip
        return found

    def title(self, config: AdvTrainConfig, results: dict[str, Any]) -> str:
        return f"Adversarial training: {config.model_label()} on {results['data']['title']}"

    def table(self, config: AdvTrainConfig, results: dict[str, Any]) -> str:
        variants = self.by_variant(results)
        metrics = list(dict.fromkeys(name for m in variants.values() for name in m))
        seconds: dict[str, list[float]] = {}
        for r in results["variants"]:
            seconds.setdefault(r["variant"], []).append(r["train_seconds"])
        return table(
            ["training", *metrics, "training time (s)"],
            [[v, *(format_mean_std(m.get(name, [])) for name in metrics), f"{mean_std(seconds[v])[0]:.0f}"]
             for v, m in variants.items()],
        )  # fmt: skip

    def body(self, config: AdvTrainConfig, results: dict[str, Any]) -> list:
        t, data = config.train, results["data"]
        losses = [loss for loss in config.objectives().values() if loss is not None]
        attack_line = (f"{config.method} at ε = {eps_label(config.eps)}, {config.steps} step(s) of "
                       f"{losses[0].step_size / PIXEL:.3g}/255") if losses else "none"  # fmt: skip
        wong = "" if self.no_reference(config) or "robustness" not in config.evaluations else (
            f" Reference: Wong et al. 2020, {WONG_2020['clean accuracy']:.1%} clean / {WONG_2020['PGD accuracy']:.1%} "
            "PGD accuracy for a PreAct ResNet-18 with FGSM-RS at 8/255."
        )  # fmt: skip
        seeds = (
            f" Each variant is trained from {config.seeds} seeds: mean ± standard deviation."
            if config.seeds > 1
            else ""
        )
        evaluated = []
        if "robustness" in config.evaluations:
            evaluated.append(f"{', '.join(config.eval_attacks_by_label())} at ε = {eps_label(config.eval_eps)} "
                             f"(fixed steps of {config.eval_alpha:g}/255 where an attack takes one; each image stopping "
                             "once misclassified, so it counts as robust only if no step fooled it)")  # fmt: skip
        if "ood" in config.evaluations:
            choice = config.ood_choice()
            evaluated.append(
                f"MSP's OOD detection against as many images of {set_title(choice)} "
                f"({choice.distance}-OOD: {choice.reason})"
            )
        if "targeting" in config.evaluations:
            evaluated.append(f"untargeted against targeted (a random other class) iterative FGSM at ε = "
                             f"{eps_label(config.attack_eps)}, at most {config.attack_steps} steps of "
                             f"{config.attack_alpha_fraction:g}·ε with per-sample early stop: success rate over the "
                             "correctly classified images, mean iterations to success, mean drop of the true "
                             "class's probability")  # fmt: skip
        return [
            f"{config.model_label()} trained on {config.train_subset or 'all'} {data['title']} training images for "
            f"{t.epochs} epochs ({t.optimizer}, lr {t.lr}, {t.schedule} schedule, weight decay {t.weight_decay}, batch "
            f"{t.batch_size}, {'random crop and flip' if config.augment else 'no augmentation'}). Adversarial "
            f"batches: {attack_line}, made on the fly with the model in train mode (Wong et al.). Loss: "
            "`w_clean · CE(clean) + w_adv · CE(adversarial)`, the weighting in the row label; *standard* is plain "
            f"cross-entropy.{seeds}",
            f"Evaluated on {data['test_size']} {data['title']} test images: {'; '.join(evaluated)}.{wong}",
            self.table(config, results),
            Image("robustness.png", "accuracy under attack") if config.evaluations != ("targeting",) else "",
            Image("targeting.png", "untargeted against targeted attacks") if "targeting" in config.evaluations else "",
            Image("training.png", "training curves") if config.train.epochs > 1 else "",
        ]

    def no_reference(self, config: AdvTrainConfig) -> str | None:
        if not config.is_dataset("cifar10"):
            return f"the write-up and Wong et al. train on CIFAR-10; this run trains on {get_dataset(config.dataset).title}"
        return None

    def compare(self, config: AdvTrainConfig, results: dict[str, Any]) -> list[Comparison]:
        """The write-up's OOD numbers and findings per weighting, its explanation of why targeted attacks succeeded
        more often; Wong et al.'s accuracies for pure FGSM-RS."""
        if self.no_reference(config):
            return []
        variants = self.by_variant(results)
        means = {v.rsplit(" ", 1)[-1]: {m: mean_std(x)[0] if x else None for m, x in metrics.items()}
                 for v, metrics in variants.items()}  # "standard" stays "standard"  # fmt: skip
        spread = f"mean of {config.seeds} seeds" if config.seeds > 1 else ""
        rows = []
        if "ood" in config.evaluations and config.ood_choice().name == "cifar100":
            auroc, aupr = "MSP AUROC (CIFAR-100)", "MSP AUPR-In (CIFAR-100)"
            for weighting, (writeup_auroc, writeup_aupr) in WRITEUP_OOD.items():
                if weighting in means:
                    rows += [
                        Comparison(f"{weighting}: {auroc}", ours=means[weighting][auroc], writeup=writeup_auroc,
                                   source=spread),
                        Comparison(f"{weighting}: {aupr}", ours=means[weighting][aupr], writeup=writeup_aupr,
                                   source="; ".join(filter(None, [spread, "the write-up's PR curve does not say which "
                                                                  "class is positive"]))),
                    ]  # fmt: skip
            runs = {w.rsplit(" ", 1)[-1]: m.get(auroc, []) for w, m in variants.items()}
            for better, worse, text in (
                ("0.5/0.5", "standard", "0.5/0.5 adversarial training improves OOD detection over standard training "
                                        "(~2 points)"),
                ("0.5/0.5", "0.2/0.8", "0.2/0.8 detects OOD slightly worse than 0.5/0.5"),
            ):  # fmt: skip
                if runs.get(better) and runs.get(worse):
                    holds, evidence = exceeds(runs[better], runs[worse])
                    rows.append(Comparison.claim(text, holds, f"MSP AUROC {better} against {worse}: {evidence}"))
        if "targeting" in config.evaluations:
            rows += self._targeting_claims(config, variants)
        pure = means.get("0/1")
        if (
            pure is not None
            and "robustness" in config.evaluations
            and config.method == "fgsm-rs"
            and config.eval_eps == 8
        ):
            pgd = f"PGD-{max(config.eval_steps)} accuracy"
            source = (
                f"Wong et al. 2020, PreAct ResNet-18, 15 epochs; ours: {config.model_label()}, {config.train.epochs}"
            )
            rows += [
                Comparison("FGSM-RS 0/1: clean accuracy", ours=pure["clean accuracy"],
                           literature=WONG_2020["clean accuracy"], source=source + " epochs"),
                Comparison(f"FGSM-RS 0/1: {pgd} at 8/255", ours=pure.get(pgd), literature=WONG_2020["PGD accuracy"],
                           source=source + " epochs; theirs PGD-50 with 10 restarts"),
            ]  # fmt: skip
        return rows

    @staticmethod
    def _targeting_claims(config: AdvTrainConfig, variants: dict[str, dict[str, list[float]]]) -> list[Comparison]:
        """Targeted minus untargeted success, per model (mean ± std over seeds): the write-up saw targeted attacks
        succeed more often on its 0.5/0.5 model and put it down to the adversarial training."""
        gaps = {}
        for variant, metrics in variants.items():
            targeted, untargeted = metrics.get("targeted success rate", []), metrics.get("untargeted success rate", [])
            if targeted and len(targeted) == len(untargeted):
                gaps[variant.rsplit(" ", 1)[-1]] = [t - u for t, u in zip(targeted, untargeted, strict=True)]
        if "standard" not in gaps or "0.5/0.5" not in gaps:
            return []
        at = f"ε = {eps_label(config.attack_eps)}, at most {config.attack_steps} steps"
        shown = "; ".join(f"{w} {format_mean_std(g)}" for w, g in gaps.items())
        even, standard = mean_std(gaps["0.5/0.5"]), mean_std(gaps["standard"])
        beyond, evidence = exceeds(gaps["0.5/0.5"], gaps["standard"])
        return [
            Comparison.claim("targeted attacks succeed slightly more often than untargeted ones on the 0.5/0.5 "
                             "adversarially trained model", even[0] > 0,
                             f"{at}; targeted minus untargeted success: {shown}"),
            Comparison.claim("this comes from the adversarial training: on the standard model targeted attacks do "
                             "not have that advantage (the write-up's explanation)",
                             even[0] > 0 and standard[0] <= 0 and beyond,
                             f"targeted minus untargeted success, 0.5/0.5 against standard: {evidence}"),
        ]  # fmt: skip
