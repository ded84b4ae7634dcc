"""Several classifiers audited on the same images and compared in one report: ``dlapps audit --model A --model B``.

Each model gets its own full audit (its own folder, report and cache, so a rerun or one more model reuses what is
done); the comparison then sets every headline number side by side with its 95% bootstrap interval, and each model
after the first against the first with a *paired* bootstrap over the same images (:mod:`dlapps.evaluate.comparison`):
a difference whose interval contains 0 is reported as within noise, not as a winner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from dlapps.data.datasets import looks_like_path
from dlapps.data.downloads import Need
from dlapps.errors import ConfigError
from dlapps.evaluate.comparison import Measure, compare_all
from dlapps.experiments.audit import AuditConfig, audit_overrides, run_audit_study
from dlapps.experiments.base import STUDIES, RunContext, Study, StudyOutput, run_study
from dlapps.ood import DETECTORS
from dlapps.report import figures
from dlapps.report.markdown import Heading, Image, table, with_interval


def model_labels(names: tuple[str, ...]) -> tuple[str, ...]:
    """A short, distinct, file-safe label per model: its name, or its file's stem."""
    labels: list[str] = []
    for name in names:
        stem = Path(name).stem if looks_like_path(name) or name.endswith(".safetensors") else name
        label = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "model"
        labels.append(label if label not in labels else f"{label}-{len(labels) + 1}")
    return tuple(labels)


@dataclass(frozen=True)
class ComparisonConfig:
    """The models' audit configs (the same but for the model), the first the one the others are compared with."""

    audits: tuple[AuditConfig, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return model_labels(tuple(a.model.name for a in self.audits))


def audit_measures(results: dict[str, Any]) -> list[Measure]:
    """The headline numbers of one audit with the per-image values behind them (see :class:`Measure`)."""
    accuracy = results["accuracy"]["per_image"]
    correct = torch.tensor(accuracy["correct"], dtype=torch.float64)
    confidence = torch.tensor(accuracy["confidence"], dtype=torch.float64)
    found = [Measure("top-1 accuracy", "accuracy", ((correct,),)),
             Measure("ECE", "ece", ((confidence, correct),))]  # fmt: skip
    if results["corruptions"]["corruptions"]:
        shift = torch.tensor(results["corruptions"]["per_image"]["accuracy"], dtype=torch.float64)
        found.append(Measure("mean corruption accuracy", "accuracy", ((shift,),)))
    robust = results["robustness"]
    for key, label in (
        ("linf", f"L∞ {robust['linf']['eps_255']:g}/255"),
        ("l2", f"L2 {robust.get('l2', {}).get('eps')}"),
    ):
        if key in robust:
            survived = torch.zeros(robust["images"], dtype=torch.float64)
            survived[robust[key]["robust_images"]] = 1.0
            found.append(Measure(f"robust accuracy, {label}", "accuracy", ((survived,),)))
    for detector, scores in results["ood"]["per_image"]["scores"].items():
        ids = torch.tensor(scores["id"], dtype=torch.float64)
        for ood_set in results["ood"]["sets"]:
            oods = torch.tensor(scores[ood_set], dtype=torch.float64)
            found.append(Measure(f"AUROC, {DETECTORS[detector].name}, {ood_set}", "auroc", ((ids,), (oods,))))
    return found


class AuditComparison(Study):
    """Not a study of its own in ``dlapps run``: ``dlapps audit`` runs it when given several models."""

    name = "audit-comparison"
    summary = "Several classifiers audited on the same data, every headline number compared with paired intervals."
    config_type = ComparisonConfig
    profiles = {}
    html = True

    def needs(self, config: ComparisonConfig, root: Path, download: bool = False) -> list[Need]:
        return [need for audit in config.audits for need in STUDIES["audit"].needs(audit, root, download)]

    def run(self, config: ComparisonConfig, ctx: RunContext) -> StudyOutput:
        audit = STUDIES["audit"]
        self._check_comparable(config, ctx)
        contexts = {label: replace(ctx, out=ctx.out / label, command=None) for label in config.labels}
        if ctx.executor == "ray":  # every model's sections at once, as tasks; each audit then finds them cached
            with ctx.progress() as progress:
                inputs = [(label, audit.inputs(settings, contexts[label], progress), contexts[label].cache)
                          for label, settings in zip(config.labels, config.audits, strict=True)]  # fmt: skip
                audit.sections_on_ray(inputs, ctx.device, progress)
        audits = [run_study(audit, settings, contexts[label])
                  for label, settings in zip(config.labels, config.audits, strict=True)]  # fmt: skip
        first = config.audits[0]
        rows = compare_all([audit_measures(r) for r in audits], resamples=first.resamples, seed=first.seed)
        models = [{"label": label, "title": r["model"]["title"], "folder": label, "summary": r["summary"]}
                  for label, r in zip(config.labels, audits, strict=True)]  # fmt: skip
        results = {"data": audits[0]["data"], "models": models, "comparison": rows}
        csv = [{"measure": row["name"], "model": model["label"], **value,
                "difference": against and against["difference"]["estimate"],
                "difference_low": against and against["difference"]["low"],
                "difference_high": against and against["difference"]["high"],
                "better_than_first": against and against["first_better"]}
               for row in rows
               for model, value, against in zip(models, row["values"], [None, *row["against_first"]], strict=True)]  # fmt: skip
        return StudyOutput(results, csv, {"comparison.png": self._figure(results)})

    @staticmethod
    def _check_comparable(config: ComparisonConfig, ctx: RunContext) -> None:
        """Every model must take the same images and classify the same classes: one clear line if not, before
        any audit starts."""
        audit = STUDIES["audit"]
        seen = {}
        for label, settings in zip(config.labels, config.audits, strict=True):
            test = audit.test_data(settings, ctx)
            classifier, test, outputs = audit.classifier(settings, ctx, test)
            classes = test.classes if outputs is not None or not classifier.classes else tuple(classifier.classes)
            seen[label] = (classifier.in_shape or test.image_shape, classes)
        (first, (shape, classes)), *others = seen.items()
        for label, (their_shape, their_classes) in others:
            if their_shape != shape:
                raise ConfigError(f"the models take images of different sizes: {first} {shape}, {label} {their_shape} "
                                  "(C, H, W); audit them apart, or at one size (--set image_size=...)")  # fmt: skip
            if their_classes != classes:
                raise ConfigError(f"the models classify different classes: {first} has {len(classes)} "
                                  f"({', '.join(classes[:3])}...), {label} {len(their_classes)} "
                                  f"({', '.join(their_classes[:3])}...)")  # fmt: skip

    @staticmethod
    def _figure(results: dict[str, Any]):
        """Each model's accuracy, ECE and robust accuracies with their intervals, and its mean AUROC per OOD set."""
        labels = [m["label"] for m in results["models"]]
        shown = [row for row in results["comparison"] if row["kind"] != "auroc"]
        panels = {row["name"]: {label: value for label, value in zip(labels, row["values"], strict=True)}
                  for row in shown}  # fmt: skip
        return figures.interval_bars(panels, title=f"{len(labels)} models on {results['data']['title']} "
                                     "(95% bootstrap intervals)")  # fmt: skip

    def title(self, config: ComparisonConfig, results: dict[str, Any]) -> str:
        return f"{len(results['models'])} classifiers audited on {results['data']['title']}"

    def table(self, config: ComparisonConfig, results: dict[str, Any]) -> str:
        return comparison_table([r for r in results["comparison"] if r["kind"] != "auroc"], results["models"])

    def body(self, config: ComparisonConfig, results: dict[str, Any]) -> list:
        models, rows = results["models"], results["comparison"]
        first = models[0]["label"]
        verdicts = [_verdict(row, models) for row in rows if row["kind"] != "auroc"]
        return [
            f"{len(models)} classifiers audited on the same {results['data']['test_size']} "
            f"{results['data']['title']} test images, each in its own folder with its full report: "
            + ", ".join(f"[{m['label']}]({m['folder']}/report.md) ({m['title']})" for m in models)
            + ".",
            Heading("Headline numbers"),
            "Each number with its 95% percentile bootstrap interval over the test images. Each model after the first "
            f"is compared with the first ({first}) on the same images: the paired bootstrap resamples both with the "
            "same indices, so the interval of the difference is narrower than the two intervals suggest. A "
            "difference whose interval contains 0 is *within noise*: these images do not tell the models apart.",
            self.table(config, results),
            "\n".join(f"- {line}" for line in verdicts),
            Image("comparison.png", "headline numbers per model"),
            Heading("OOD detection (AUROC per detector and set)"),
            comparison_table([r for r in rows if r["kind"] == "auroc"], models),
        ]


def comparison_table(rows: list[dict[str, Any]], models: list[dict[str, Any]]) -> str:
    """Measures x models (value and interval, in %), then each later model minus the first and the verdict."""
    headers = ["measure", *(m["label"] for m in models),
               *(f"{m['label']} − {models[0]['label']} (95% interval)" for m in models[1:])]  # fmt: skip
    body = []
    for row in rows:
        cells = [with_interval(v["estimate"], v) for v in row["values"]]
        for against in row["against_first"]:
            d = against["difference"]
            verdict = ("within noise" if against["first_better"] is None else
                       "better" if against["first_better"] else "worse")  # fmt: skip
            cells.append(f"{100 * d['estimate']:+.1f} ({100 * d['low']:+.1f} to {100 * d['high']:+.1f}): {verdict}")
        body.append([row["name"] + ("" if row["higher_is_better"] else " (lower is better)"), *cells])
    return table(headers, body)


def _verdict(row: dict[str, Any], models: list[dict[str, Any]]) -> str:
    first = models[0]["label"]
    parts = []
    for model, against in zip(models[1:], row["against_first"], strict=True):
        if against["first_better"] is None:
            parts.append(f"{model['label']} and {first} are within noise of each other")
        else:
            parts.append(f"{model['label']} is {'better' if against['first_better'] else 'worse'} than {first}")
    return f"**{row['name']}**: " + "; ".join(parts) + "."


def compare_models(
    models: tuple[str, ...],
    data: str,
    *,
    ood: tuple[str, ...] = (),
    profile: str = "quick",
    settings: list[str] | None = None,
    ctx: RunContext | None = None,
) -> dict[str, Any]:
    """Audit each of ``models`` (names or checkpoint paths) on ``data`` with the same settings, each into its own
    folder under ``ctx.out``, and compare them in one report there; return its results."""
    if len(models) < 2 or len(set(model_labels(models))) != len(models):
        raise ConfigError(f"a comparison needs at least two distinct models, got {', '.join(models)}")
    overrides = audit_overrides(ood, settings)
    audit = STUDIES["audit"]
    config = ComparisonConfig(tuple(audit.config(profile, [f"dataset={data}", *overrides, f"model.name={name}"])
                                    for name in models))  # fmt: skip
    return run_audit_study(AuditComparison(), config, list(models), data, profile, overrides, ctx)
