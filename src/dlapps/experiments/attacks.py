"""Studies ``fgsm`` and ``targeted``: one sweep of an attack over ε, untargeted and with target rules.

Iterative FGSM (by default; any registered attack) with per-sample early stop attacks a classifier on its
dataset's test images (the published CIFAR-10 ResNet-20 by default) at every ε of a sweep, at most ``steps``
steps of ``alpha_fraction · ε`` each: untargeted, and towards each target of ``targets`` (a random other
class, the least-likely class, a fixed class). ``fgsm`` reports success rate, mean iterations to success,
mean true-class confidence drop and robust accuracy against ε (the course write-up's three panels, plus
robust accuracy); ``targeted`` sets the target rules side by side at equal budgets. Both draw examples:
originals, perturbations amplified to full range, adversarial images with their predictions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from dlapps.attacks import (
    ATTACKS,
    PIXEL,
    TargetSpec,
    attack,
    attack_arrays,
    cumulative_success,
    eps_label,
    showcase,
    summarize,
)
from dlapps.config import GreyLevels, PositiveFloat, PositiveInt, require
from dlapps.data import ImageArrays, get_dataset
from dlapps.errors import ConfigError
from dlapps.experiments.base import STUDIES, OnDataset, RunContext, Study, StudyOutput
from dlapps.models.classifier import align_labels
from dlapps.models.hooks import model_device
from dlapps.models.layout import inference_batch
from dlapps.report import figures
from dlapps.report.comparison import Comparison
from dlapps.report.markdown import Heading, Image, format_number, table
from dlapps.report.runs import RunCache
from dlapps.train import TrainConfig
from dlapps.train.model_spec import ModelSpec
from dlapps.train.writeup import writeup_cnn

RULES = ("random", "least-likely")
METRICS = {
    "success_rate": "attack success rate",
    "mean_iterations": "mean iterations to success",
    "mean_confidence_drop": "mean true-class confidence drop",
}
# Madry et al. 2018, Table 2: a naturally trained wide ResNet on CIFAR-10 under PGD (7 steps of 2/255, ε = 8/255).
MADRY_2018_NATURAL_PGD_ACCURACY = 0.035
# The course small CNN's recipe, used when the attacked model is an architecture trained here.
VICTIM_TRAINING = TrainConfig(epochs=20, batch_size=128, optimizer="adam", lr=1e-3, schedule="cosine")


@dataclass(frozen=True)
class AttackConfig(OnDataset):
    model: ModelSpec = field(default_factory=lambda: ModelSpec(train=VICTIM_TRAINING))
    method: Annotated[str, ATTACKS] = "bim"
    epsilons: tuple[GreyLevels, ...] = (0.5, 1, 2, 3, 4, 6, 8, 12, 16)  # grey levels (units of 1/255)
    steps: PositiveInt = 10
    alpha_fraction: PositiveFloat = 0.25  # step size as a fraction of ε (attacks that set their own keep it)
    targets: tuple[str, ...] = ()  # each beside the untargeted attack: random, least-likely, a class or its index
    test_subset: PositiveInt | None = None  # None: the whole test split
    batch_size: PositiveInt | None = None  # images per forward pass (None: as many as run fastest on the device)
    example_eps: GreyLevels = 1.0  # grey levels; the course write-up showed FGSM examples at 1/255
    examples: PositiveInt = 6
    seed: int = 0  # test subset, random starts, random targets

    def validate(self) -> None:
        require(len(self.epsilons) > 0, "epsilons must not be empty")
        require(list(self.epsilons) == sorted(set(self.epsilons)), f"epsilons must increase, got {self.epsilons}")
        require(not ATTACKS[self.method].single_step or self.steps == 1, f"{self.method} takes one step: set steps=1")
        require(len(self.targets) == len(set(self.targets)), f"targets repeat an entry: {self.targets}")
        require(not self.targets or ATTACKS[self.method].takes_target,
                f"{self.method} is untargeted: it takes no targets (set targets= empty, or another method)")  # fmt: skip

    def modes(self, classes: tuple[str, ...]) -> dict[str, TargetSpec]:
        """Mode label -> target of :func:`dlapps.attacks.attack`: untargeted, then each entry of ``targets``."""
        modes: dict[str, TargetSpec] = {"untargeted": None}
        for entry in self.targets:
            if entry in RULES:
                modes[entry] = entry
            elif entry in classes or (entry.isdigit() and int(entry) < len(classes)):
                index = classes.index(entry) if entry in classes else int(entry)
                modes[f"class {classes[index]}"] = index
            else:
                shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
                raise ConfigError(
                    f"targets entry {entry!r} is not {' or '.join(RULES)}, a class name ({shown}) "
                    f"or a class index below {len(classes)}"
                )
        return modes

    def attack_kwargs(self, eps: float, target: TargetSpec) -> dict[str, Any]:
        """Arguments of :func:`dlapps.attacks.attack` at ``eps`` grey levels."""
        alpha = None if ATTACKS[self.method].sets_own_step() else self.alpha_fraction * eps * PIXEL
        return {"method": self.method, "eps": eps * PIXEL, "alpha": alpha, "target": target, "early_stop": True}


@dataclass(frozen=True)
class TargetedConfig(AttackConfig):
    epsilons: tuple[GreyLevels, ...] = (2, 4, 8)
    targets: tuple[str, ...] = ("random", "least-likely", "0")
    example_eps: GreyLevels = 8.0


def cached_attack(
    cache: RunCache, name: str, model: nn.Module, victim: dict[str, Any], data: ImageArrays, *, seed: int,
    batch_size: int, progress: Progress, **attack_kwargs: Any,
) -> dict[str, Any]:  # fmt: skip
    """Attack ``data`` once per distinct setting (``attack_kwargs``: :func:`~dlapps.attacks.attack`'s, ``steps``
    among them); the record holds the summary and the timing.

    The cache key names everything the attack depends on: the victim (as
    :meth:`~dlapps.models.Classifier.describe` describes it), the data, the seed of its random starts and targets,
    and the attack's arguments.
    """
    settings = {"victim": victim, "data": {"source": data.source, "n": len(data), "seed": seed}, **attack_kwargs}

    def run(key: str) -> dict[str, Any]:
        task = progress.add_task(name, total=len(data))
        started = time.perf_counter()
        result = attack_arrays(
            model, data, batch_size=batch_size, on_done=lambda n: progress.advance(task, n),
            generator=torch.Generator().manual_seed(seed), **attack_kwargs,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        progress.remove_task(task)
        return {"key": key, **summarize(result), "cumulative_success": cumulative_success(result, attack_kwargs["steps"]),
                "seconds": seconds, "images_per_second": len(data) / seconds}  # fmt: skip

    return cache.get_or_compute(name, settings, run)


class AttackSweep(Study):
    """What ``fgsm`` and ``targeted`` share: the sweep, the examples, the table and the data description."""

    config_type = AttackConfig
    reads_training_split = False  # (a victim trained here adds it)

    def run(self, config: AttackConfig, ctx: RunContext) -> StudyOutput:
        dataset = get_dataset(config.dataset)
        data = config.load(ctx, model_size=config.model.input_size(), limit=config.test_subset, seed=config.seed)
        with ctx.progress() as progress:
            classifier = ctx.classifier(
                config.model, data, dataset=dataset, image_size=config.image_size, progress=progress
            )
            data = align_labels(classifier, dataset, data, config.model.class_map)
            modes = config.modes(data.classes)
            victim = classifier.describe()
            batch = config.batch_size or inference_batch(data.image_shape, ctx.device)
            rows = []
            for eps in config.epsilons:
                for mode, target in modes.items():
                    record = cached_attack(
                        ctx.cache, f"{config.method}-{mode.replace(' ', '-')}-eps{eps:g}", classifier.module, victim,
                        data, seed=config.seed, batch_size=batch, progress=progress, steps=config.steps,
                        **config.attack_kwargs(eps, target),
                    )  # fmt: skip
                    rows.append({"eps_255": eps, "mode": mode, **record})
                    progress.console.print(
                        f"ε = {eps_label(eps):>7} {mode:>16}: success {format_number(record['success_rate'])}, "
                        f"mean iterations {format_number(record['mean_iterations'], 2)} ({record['seconds']:.0f} s)"
                    )
            example_mode = list(modes)[-1]
            examples = _examples(classifier.module, data, config, modes[example_mode], batch)
        results = {
            "victim": victim,
            "data": {"dataset": config.dataset, "title": dataset.title, "test": data.source, "test_size": len(data)},
            "modes": list(modes),
            "rows": rows,
            "examples": {"mode": example_mode, **{k: v for k, v in examples.items() if k != "images"}},
        }
        found = self.figures(config, results)
        if examples["label"]:  # (none when the model gets every image of the pool wrong: nothing to attack)
            found["examples.png"] = _examples_figure(examples, example_mode, data.classes)
        return StudyOutput(results, [{k: v for k, v in r.items() if k != "cumulative_success"} for r in rows], found)

    def figures(self, config: AttackConfig, results: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def table(self, config: AttackConfig, results: dict[str, Any]) -> str:
        headers = ["ε", "attack", "attacked", "skipped", "success rate", "mean iterations", "mean confidence drop",
                   "robust accuracy", "seconds"]  # fmt: skip
        rows = [
            [eps_label(r["eps_255"]), r["mode"], r["attacked"], r["skipped"], format_number(r["success_rate"]),
             format_number(r["mean_iterations"], 2), format_number(r["mean_confidence_drop"]),
             format_number(r["robust_accuracy"]), f"{r['seconds']:.0f}"]
            for r in results["rows"]
        ]  # fmt: skip
        return table(headers, rows)

    def setup(self, config: AttackConfig, results: dict[str, Any]) -> str:
        victim, data = results["victim"], results["data"]
        attack = ATTACKS[config.method]
        alpha = ("ε (one step)" if attack.single_step else "a size it sets itself" if attack.sets_own_step()
                 else f"{config.alpha_fraction:g}·ε")  # fmt: skip
        return (
            f"{config.method.upper()} attacks {victim['title']}"
            + (f" ({victim['reference']})" if victim["reference"] else "")
            + f" on {data['test_size']} {data['title']} test images: at most {config.steps} step(s) of {alpha}, "
            "projected onto the L∞ ball of radius ε and [0, 1]; a sample stops as soon as it meets its goal "
            f"(per-sample early stop, the batch keeps its shape). {config.method.upper()}: "
            f"{ATTACKS[config.method].summary}."
        )

    def examples_blocks(self, config: AttackConfig, results: dict[str, Any]) -> list:
        mode = results["examples"]["mode"]
        heading = Heading(f"Examples at ε = {eps_label(config.example_eps)}, {mode}")
        if not results["examples"]["label"]:
            return [heading, "No examples: the model classifies none of the images they are drawn from correctly, "
                             "so there is nothing to attack."]  # fmt: skip
        return [
            heading,
            "Perturbations are amplified so that ±ε spans black to white.",
            Image("examples.png", "examples"),
        ]

    def no_reference(self, config: AttackConfig) -> str | None:
        if not config.is_dataset("cifar10"):
            return f"the write-up attacks a CIFAR-10 classifier; this run attacks {get_dataset(config.dataset).title}"
        return None


@torch.no_grad()
def _examples(
    model: nn.Module, test: ImageArrays, config: AttackConfig, target: TargetSpec, batch: int
) -> dict[str, Any]:
    """Attacks at ``example_eps`` on the first test images: successes of distinct classes first.

    ``images`` holds (original, adversarial) as (N, H, W, C) arrays for the figure; the rest is JSON-ready.
    """
    pool = test.take(torch.arange(min(len(test), 20 * config.examples))).to(model_device(model))
    x = pool.images.float() / 255
    result = attack(model, x, pool.labels, steps=config.steps, batch_size=batch, generator=torch.Generator().manual_seed(config.seed),
                    **config.attack_kwargs(config.example_eps, target))  # fmt: skip
    chosen = showcase(result, config.examples)
    probs_before = torch.softmax(model(x[chosen]), 1)
    probs_after = torch.softmax(model(result.adversarial[chosen]), 1)
    return {
        "eps_255": config.example_eps,
        "images": tuple(t[chosen].permute(0, 2, 3, 1).cpu().numpy() for t in (x, result.adversarial)),
        "label": result.labels[chosen].tolist(),
        "target": None if result.targets is None else result.targets[chosen].tolist(),
        "pred_before": result.pred_before[chosen].tolist(),
        "pred_after": result.pred_after[chosen].tolist(),
        "confidence_before": probs_before.max(1).values.tolist(),
        "confidence_after": probs_after.max(1).values.tolist(),
        "iterations": result.iterations[chosen].tolist(),
        "success": result.success[chosen].tolist(),
    }


def _examples_figure(examples: dict[str, Any], mode: str, classes: tuple[str, ...]):
    steps = ["no success" if k < 0 else f"{k} step{'s' if k != 1 else ''}" for k in examples["iterations"]]
    if examples["target"] is not None:
        steps = [f"→ {classes[t]}: {s}" for t, s in zip(examples["target"], steps, strict=True)]
    predicted = {when: [f"{classes[p]} {c:.0%}" for p, c in zip(examples[f"pred_{when}"], examples[f"confidence_{when}"],
                                                                 strict=True)] for when in ("before", "after")}  # fmt: skip
    return figures.adversarial_examples(
        *examples["images"], examples["eps_255"] / 255, predicted["before"], steps, predicted["after"],
        title=f"ε = {eps_label(examples['eps_255'])}, {mode}: prediction and confidence before and after",
    )  # fmt: skip


@STUDIES.register("fgsm")
class FGSM(AttackSweep):
    summary = "Iterative FGSM with per-sample early stop (CIFAR-10 ResNet-20 by default): success, iterations, confidence vs ε."
    profiles = {
        "quick": {"test_subset": 500, "epsilons": (0.5, 1, 2, 4, 8, 16)},
        "full": {},
        "writeup": {**writeup_cnn("model"), "epsilons": (0.5, 1, 2, 4, 8, 16), "steps": 10, "example_eps": 1.0},
    }
    exercise = (4, "2.1", "FGSM and iterative FGSM")

    def figures(self, config: AttackConfig, results: dict[str, Any]) -> dict[str, Any]:
        rows, modes = results["rows"], results["modes"]
        x = list(config.epsilons)

        def series(key: str) -> dict[str, tuple[list[float], list[float]]]:
            return {("" if len(modes) == 1 else mode): (x, [np.nan if r[key] is None else r[key] for r in rows
                                                           if r["mode"] == mode]) for mode in modes}  # fmt: skip

        iterations = f"mean iterations to success (max {config.steps})"
        unit = (0, 1.02)
        accuracy = {"clean": (x, [r["clean_accuracy"] for r in rows if r["mode"] == modes[0]])}
        accuracy |= {f"robust{'' if len(modes) == 1 else ', ' + m}": v for m, v in series("robust_accuracy").items()}
        panels = {"attack success rate": series("success_rate"), iterations: series("mean_iterations"),
                  "mean true-class confidence drop": series("mean_confidence_drop"), "accuracy": accuracy}  # fmt: skip
        sweep = figures.line_panels(
            panels, xlabel="ε (grey levels, /255)", xticks=x, xticklabels=[f"{e:g}" for e in x], log2_x=min(x) > 0,
            ylims={"attack success rate": unit, "mean true-class confidence drop": unit, "accuracy": unit,
                   iterations: (0, config.steps + 0.5)},
            title=f"{config.method.upper()} on {results['victim']['title']}, {results['data']['test_size']} "
            f"{results['data']['title']} test images, step {config.alpha_fraction:g}·ε, early stop",
        )  # fmt: skip
        return {"sweep.png": sweep}

    def title(self, config: AttackConfig, results: dict[str, Any]) -> str:
        return f"Adversarial examples against ε on {results['data']['title']}: {results['victim']['title']}"

    def body(self, config: AttackConfig, results: dict[str, Any]) -> list:
        return [
            self.setup(config, results),
            "Success rate, mean iterations and mean confidence drop are measured on the *attacked* images "
            "(classified correctly before the attack); mean iterations over the successful ones; the confidence "
            "drop is the true-class probability before minus after; robust accuracy is over all images.",
            self.table(config, results),
            Image("sweep.png", "metrics against ε"),
            *self.examples_blocks(config, results),
        ]

    def compare(self, config: AttackConfig, results: dict[str, Any]) -> list[Comparison]:
        """The write-up's finding (larger ε, stronger attack) and an undefended model's accuracy at 8/255."""
        if self.no_reference(config):
            return []
        sweep = [r for r in results["rows"] if r["mode"] == "untargeted" and r["success_rate"] is not None]
        rates = [r["success_rate"] for r in sweep]  # (none where no image was classified correctly to attack)
        rows = [
            Comparison.claim(
                "a larger ε gives a more successful attack",
                all(b >= a for a, b in zip(rates, rates[1:], strict=False)),
                ", ".join(f"{eps_label(r['eps_255'])}: {r['success_rate']:.3f}" for r in sweep),
            )
        ] if len(sweep) > 1 else []  # fmt: skip
        at_8 = next((r for r in sweep if r["eps_255"] == 8), None)
        undefended = config.model.is_published or config.model.kind == "train"
        if at_8 is not None and config.method != "fgsm" and undefended:
            rows.append(
                Comparison(
                    "robust accuracy of an undefended model at ε = 8/255",
                    ours=at_8["robust_accuracy"],
                    literature=MADRY_2018_NATURAL_PGD_ACCURACY,
                    source=f"Madry et al. 2018 (wide ResNet, PGD-7); ours: {results['victim']['title']}, "
                    f"{config.method.upper()}-{config.steps}",
                )
            )
        return rows


@STUDIES.register("targeted")
class Targeted(AttackSweep):
    summary = "Targeted (random, least-likely, fixed class) vs untargeted iterative attacks at equal ε and steps."
    config_type = TargetedConfig
    profiles = {
        "quick": {"test_subset": 500, "epsilons": (2,)},
        "full": {},
        # the standard small CNN; its 0.5/0.5 adversarially trained twin is attacked alike in adv-train's writeup
        "writeup": {
            **writeup_cnn("model"),
            "epsilons": (1.0,),
            "steps": 10,
            "targets": ("random", "dog"),
            "example_eps": 1.0,
        },
    }
    exercise = (4, "3.3", "targeted attacks")

    def figures(self, config: AttackConfig, results: dict[str, Any]) -> dict[str, Any]:
        rows = results["rows"]
        by_eps = {eps_label(e): [r for r in rows if r["eps_255"] == e] for e in config.epsilons}
        title = f"{config.method.upper()} on {results['victim']['title']}, {results['data']['test_size']} " \
                f"{results['data']['title']} test images"  # fmt: skip
        bars = {label: {eps: {r["mode"]: r[key] for r in cell} for eps, cell in by_eps.items()}
                for key, label in METRICS.items()}  # fmt: skip
        steps = list(range(config.steps + 1))
        curves = {f"ε = {eps}": {r["mode"]: (steps, r["cumulative_success"]) for r in cell if r["cumulative_success"]}
                  for eps, cell in by_eps.items()}  # fmt: skip
        return {
            "comparison.png": figures.grouped_bars(
                bars, xlabel="ε", title=f"{title}, at most {config.steps} steps of {config.alpha_fraction:g}·ε",
                ylims={METRICS["success_rate"]: (0, 1.12), METRICS["mean_confidence_drop"]: (0, 1.12)},
            ),
            "cumulative_success.png": figures.line_panels(
                curves, xlabel="steps taken", title=f"{title}:\nfraction of attacked images fooled within k steps",
                ylims={panel: (0, 1.02) for panel in curves},
            ),
        }  # fmt: skip

    def title(self, config: AttackConfig, results: dict[str, Any]) -> str:
        return f"Targeted against untargeted attacks on {results['data']['title']}: {results['victim']['title']}"

    def body(self, config: AttackConfig, results: dict[str, Any]) -> list:
        return [
            self.setup(config, results),
            "Untargeted success: the prediction leaves the true class. Targeted success: the prediction reaches "
            "the target — a random other class, the least-likely other class of the clean logits, or a fixed "
            "class; images whose fixed target is their own class are skipped (column *skipped*), not counted as "
            "successes. Metrics are over the attacked images (classified correctly before, not skipped); mean "
            "iterations over the successful ones; confidence drop: true-class probability before minus after.",
            self.table(config, results),
            Image("comparison.png", "targeted vs untargeted"),
            Image("cumulative_success.png", "fooled within k steps"),
            *self.examples_blocks(config, results),
        ]

    def compare(self, config: AttackConfig, results: dict[str, Any]) -> list[Comparison]:
        """The write-up's three findings (at ε = 1/255), checked at the smallest ε here against every target."""
        if self.no_reference(config):
            return []
        eps = min(r["eps_255"] for r in results["rows"])
        at_eps = {r["mode"]: r for r in results["rows"] if r["eps_255"] == eps}
        base = at_eps.pop("untargeted", None)
        if base is None or not at_eps:
            return []
        claims = (
            ("mean_iterations", "untargeted attacks need fewer iterations than targeted ones", lambda u, t: u < t),
            ("mean_confidence_drop", "untargeted attacks drop confidence more than targeted ones", lambda u, t: u > t),
            ("success_rate", "targeted attacks succeed slightly more often than untargeted ones", lambda u, t: t > u),
        )
        rows = []
        for metric, text, holds in claims:
            theirs = {mode: r[metric] for mode, r in at_eps.items() if r[metric] is not None}
            if base[metric] is None or not theirs:
                continue
            listed = ", ".join(f"{mode} {value:.3f}" for mode, value in theirs.items())
            rows.append(
                Comparison.claim(
                    text,
                    all(holds(base[metric], value) for value in theirs.values()),
                    f"ε = {eps_label(eps)}, {METRICS[metric]}: untargeted {base[metric]:.3f}; targeted: {listed}",
                )
            )
        return rows
