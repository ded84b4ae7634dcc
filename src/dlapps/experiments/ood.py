"""Study ``ood``: post-hoc OOD detectors on CIFAR-10 classifiers, a weak one and a strong one.

In-distribution (ID) is the CIFAR-10 test set; OOD sets are CIFAR-100 without the classes overlapping
CIFAR-10 (near-OOD), MNIST as 32x32 RGB, FakeData and pixel noise (far-OOD), or a user's archives. Models are
the course's small CNN (trained here, cached in the model folder) and a CIFAR ResNet-20 (the published
checkpoint, a user's weights file, or trained here). Detectors needing ID statistics are fitted on CIFAR-10
*training* images. Writes every metric per model x detector x OOD set, ID accuracy, score histograms, ROC and
PR curves and a report that says which detectors beat MSP.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dlapps.config import require
from dlapps.data import ImageArrays, get_spec, load_arrays
from dlapps.data.ood import CIFAR10_OVERLAP, OOD_SETS, OodRequest, conform, is_archive, load_ood_set
from dlapps.experiments.base import RunContext, Study, environment_section, study_results
from dlapps.experiments.zoo import ClassifierRecipe, obtain_classifier
from dlapps.models import PRETRAINED, load_pretrained, pretrained_path
from dlapps.ood import DETECTORS, METRICS, create_detector, fit_detectors, ood_metrics, score_detectors
from dlapps.ood.plots import histogram_grid, overview, roc_pr_grid
from dlapps.report.comparison import Comparison, comparison_section
from dlapps.report.io import save_figure, staged_output, write_csv, write_json, write_text
from dlapps.report.markdown import table
from dlapps.train import TrainConfig

MODEL_LABELS = {"small_cnn": "small CNN", "resnet20": "ResNet-20"}
WRITEUP_ACCURACY = {"small_cnn": 0.64, "resnet20": 0.81}  # the course write-up's test accuracies
WRITEUP_SMALL_CNN_MSP_AUROC = 0.63  # its small CNN, CIFAR-10 vs its CIFAR-100 subset (exercise 2.2's baseline)
MSP_LITERATURE_AUROC = (0.85, 0.89)  # MSP, CIFAR-10 vs CIFAR-100, for a ~92% classifier
# OpenOOD v1.5, CIFAR-10, ResNet-18 at ~95% accuracy: (near-OOD, far-OOD) AUROC in %. Its near-OOD sets are
# CIFAR-100 and TinyImageNet, its far-OOD ones MNIST, SVHN, Textures and Places365: context, not a target.
OPENOOD_ANCHORS = {"msp": (88.03, 90.73), "knn": (90.64, 92.96), "vim": (88.68, 93.48)}
IN_SHAPE = get_spec("cifar10").image_shape


@dataclass(frozen=True)
class DetectorSettings:
    """Detector hyper-parameters; the defaults are each paper's CIFAR settings."""

    odin_temperature: float = 1000.0
    odin_epsilon: float = 0.0014
    knn_k: int = 50
    vim_dim: int | None = None  # principal-subspace dimension; None: the paper's rule (N/2 for small N)
    react_percentile: float = 90.0

    def validate(self) -> None:
        require(self.odin_temperature > 0, f"odin_temperature must be positive, got {self.odin_temperature}")
        require(self.odin_epsilon >= 0, f"odin_epsilon must be >= 0, got {self.odin_epsilon}")
        require(self.knn_k > 0, f"knn_k must be positive, got {self.knn_k}")
        require(self.vim_dim is None or self.vim_dim > 0, f"vim_dim must be positive or none, got {self.vim_dim}")
        require(0 < self.react_percentile <= 100, f"react_percentile must be in (0, 100], got {self.react_percentile}")

    def hparams(self, detector: str) -> dict[str, Any]:
        return {
            "odin": {"temperature": self.odin_temperature, "epsilon": self.odin_epsilon},
            "knn": {"k": self.knn_k},
            "vim": {"dim": self.vim_dim},
            "react": {"percentile": self.react_percentile},
        }.get(detector, {})


@dataclass(frozen=True)
class OodConfig:
    models: tuple[str, ...] = ("small_cnn", "resnet20")
    resnet20: Literal["pretrained", "train"] = "pretrained"
    resnet20_weights: str | None = None  # a weights file for ResNet-20; None: the published checkpoint
    detectors: tuple[str, ...] = tuple(DETECTORS)
    ood_sets: tuple[str, ...] = tuple(OOD_SETS)  # names, or paths to .npz archives
    cifar100_exclude: tuple[str, ...] = CIFAR10_OVERLAP
    resize_ood: bool = False  # resize / convert OOD images that do not fit the models' input
    id_subset: int | None = None  # CIFAR-10 test images (None: all)
    ood_subset: int | None = None  # images per OOD set (None: all; 2,000 generated)
    fit_subset: int | None = 20_000  # CIFAR-10 training images for detector statistics (None: all 50,000)
    train_subset: int | None = None  # CIFAR-10 training images for models trained here (None: all)
    augment: bool = False  # random crop and flip when training the small CNN (the write-up had none)
    small_cnn_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=3, batch_size=128, optimizer="adam", lr=1e-3)
    )
    resnet20_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=50, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="cosine"
        )
    )
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    batch_size: int = 500
    seed: int = 0

    def validate(self) -> None:
        require(len(self.models) > 0, "models must not be empty")
        for name in self.models:
            require(name in MODEL_LABELS, f"unknown model {name!r}; models: {', '.join(MODEL_LABELS)}")
        require(len(set(self.models)) == len(self.models), f"models are repeated: {self.models}")
        require(len(self.detectors) > 0, "detectors must not be empty")
        for name in self.detectors:
            require(name in DETECTORS, f"unknown detector {name!r}; detectors: {', '.join(DETECTORS)}")
        require(len(set(self.detectors)) == len(self.detectors), f"detectors are repeated: {self.detectors}")
        require(len(self.ood_sets) > 0, "ood_sets must not be empty")
        for name in self.ood_sets:
            require(
                name in OOD_SETS or is_archive(name),
                f"unknown OOD set {name!r}; sets: {', '.join(OOD_SETS)}, or a path to a .npz archive",
            )
        labels = [set_label(name) for name in self.ood_sets]
        require(len(set(labels)) == len(labels), f"ood_sets must have distinct names, got {', '.join(labels)}")
        for key in ("id_subset", "ood_subset", "fit_subset", "train_subset"):
            value = getattr(self, key)
            require(value is None or value > 0, f"{key} must be positive or none, got {value}")
        require(
            self.fit_subset is None or "knn" not in self.detectors or self.fit_subset >= self.detector.knn_k,
            f"fit_subset={self.fit_subset} is smaller than knn_k={self.detector.knn_k}",
        )
        require(
            self.resnet20_weights is None or self.resnet20 == "pretrained",
            "resnet20_weights is a pretrained weights file; it does not go with resnet20=train",
        )
        require(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")


def set_label(name: str) -> str:
    return Path(name).stem if is_archive(name) else name


def set_distance(name: str) -> str:
    return OOD_SETS[name].distance if name in OOD_SETS else "user"


def _load_data(config: OodConfig, ctx: RunContext) -> tuple[ImageArrays, ImageArrays, dict[str, ImageArrays]]:
    """CIFAR-10 train and test, and every OOD set checked against the models' input shape.

    OOD sets come first, so that a set that does not fit fails in seconds, not after loading and training.
    """
    request = OodRequest(ctx.data_root, ctx.download, config.ood_subset, config.seed, config.cifar100_exclude)
    ood = {
        set_label(name): conform(load_ood_set(name, request), IN_SHAPE, resize=config.resize_ood)
        for name in config.ood_sets
    }
    train = load_arrays("cifar10", "train", ctx.data_root, ctx.download)
    test = load_arrays("cifar10", "test", ctx.data_root, ctx.download)
    return train, test, ood


def _obtain_model(name: str, config: OodConfig, ctx: RunContext, train, test, progress) -> tuple[nn.Module, dict]:
    """The model and what to report about it: where it came from and, if trained here, its training."""
    if name == "resnet20" and config.resnet20 == "pretrained":
        model = load_pretrained("resnet20_cifar10", ctx.data_root, ctx.download, weights=config.resnet20_weights)
        path = config.resnet20_weights or pretrained_path("resnet20_cifar10", ctx.data_root, ctx.download)
        info = {"source": f"pretrained weights {path}", "published": PRETRAINED["resnet20_cifar10"].accuracy}
        return model.to(ctx.device), info
    recipe = ClassifierRecipe(
        name,
        train=config.small_cnn_train if name == "small_cnn" else config.resnet20_train,
        train_subset=config.train_subset,
        test_subset=config.id_subset,  # per-epoch test accuracy on as many images as the study scores
        augment=config.augment if name == "small_cnn" else True,
        seed=config.seed,
    )
    model, trained = obtain_classifier(recipe, ctx, progress=progress, train=train, test=test)
    info = {"source": f"trained here: {ctx.model_dir / recipe.key()}.safetensors", "history": trained["history"]}
    return model, info


# Scores of one model: (ID scores per detector, {OOD set: scores per detector}).
Scores = tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]


def _evaluate_model(
    config: OodConfig, model: nn.Module, fit_data: ImageArrays, id_data: ImageArrays, ood: dict[str, ImageArrays]
) -> tuple[dict[str, Any], Scores]:
    """Fit every detector, score the ID and OOD sets; return facts about the model and all scores."""
    detectors = {name: create_detector(name, **config.detector.hparams(name)) for name in config.detectors}
    started = time.perf_counter()
    fit_detectors(detectors, model, fit_data, batch_size=config.batch_size)
    id_scored = score_detectors(detectors, id_data, batch_size=config.batch_size)
    ood_scores = {
        name: score_detectors(detectors, data, batch_size=config.batch_size).scores for name, data in ood.items()
    }
    facts = {
        "accuracy": id_scored.accuracy(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "detector_seconds": time.perf_counter() - started,
    }
    return facts, (id_scored.scores, ood_scores)


def run(config: OodConfig, ctx: RunContext) -> dict[str, Any]:
    started = time.perf_counter()
    train, test, ood = _load_data(config, ctx)
    id_data = test.subset(config.id_subset, config.seed)
    fit_data = train.subset(config.fit_subset, config.seed)
    distances = {set_label(name): set_distance(name) for name in config.ood_sets}
    models: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    scores: dict[str, Scores] = {}
    with ctx.progress() as progress:
        task = progress.add_task("ood", total=len(config.models))
        for name in config.models:
            progress.update(task, description=f"{MODEL_LABELS[name]}: model")
            model, info = _obtain_model(name, config, ctx, train, test, progress)
            progress.update(task, description=f"{MODEL_LABELS[name]}: detectors")
            facts, scores[name] = _evaluate_model(config, model, fit_data, id_data, ood)
            models[name] = {"label": MODEL_LABELS[name], **facts, **info}
            id_scores, ood_scores = scores[name]
            for set_name, per_detector in ood_scores.items():
                for detector in config.detectors:
                    metrics = ood_metrics(id_scores[detector], per_detector[detector])
                    records.append(
                        {"model": name, "detector": detector, "ood_set": set_name, "distance": distances[set_name]}
                        | metrics
                    )
            progress.console.print(
                f"{MODEL_LABELS[name]}: ID accuracy {facts['accuracy']:.4f}; fitting and scoring took "
                f"{facts['detector_seconds']:.0f} s"
            )
            progress.advance(task)
    results = study_results(
        "ood",
        config,
        ctx,
        started,
        data={
            "id": {"source": id_data.source, "size": len(id_data)},
            "fit": {"source": fit_data.source, "size": len(fit_data)},
            "ood": {
                name: {"source": data.source, "size": len(data), "distance": distances[name]}
                for name, data in ood.items()
            },
        },
        models=models,
        metrics=records,
        summary=summarise(records),
    )
    results["checks"] = checks(config, results)
    with staged_output(ctx.out) as stage:
        _write_artifacts(stage, config, results, scores)
    return results


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and detector: mean AUROC and FPR@95 over near- and far-OOD sets, and whether it beats MSP."""
    rows = []
    for model, detector in dict.fromkeys((r["model"], r["detector"]) for r in records):
        row: dict[str, Any] = {"model": model, "detector": detector}
        for group in ("near", "far"):
            mine = [r for r in records if (r["model"], r["detector"], r["distance"]) == (model, detector, group)]
            row[f"{group}_auroc"] = _mean([r["auroc"] for r in mine])
            row[f"{group}_fpr95"] = _mean([r["fpr95"] for r in mine])
        rows.append(row)
    msp = {row["model"]: row for row in rows if row["detector"] == "msp"}
    for row in rows:
        for group in ("near", "far"):
            base = msp.get(row["model"], {}).get(f"{group}_auroc")
            mine = row[f"{group}_auroc"]
            comparable = row["detector"] != "msp" and base is not None and mine is not None
            row[f"beats_msp_{group}"] = bool(mine > base) if comparable else None
    return rows


def _find(records: list[dict[str, Any]], **keys: str) -> dict[str, Any] | None:
    return next((r for r in records if all(r[k] == v for k, v in keys.items())), None)


def checks(config: OodConfig, results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals that this run can check, each with what was measured."""
    records, models, found = results["metrics"], results["models"], []
    published = config.resnet20 == "pretrained" and config.resnet20_weights is None
    msp_resnet = _find(records, model="resnet20", detector="msp", ood_set="cifar100")
    if published and msp_resnet is not None:
        low, high = MSP_LITERATURE_AUROC
        found.append(
            {
                "goal": f"MSP AUROC of the published ResNet-20, CIFAR-10 vs CIFAR-100 subset, in [{low}, {high}]",
                "measured": msp_resnet["auroc"],
                "met": low <= msp_resnet["auroc"] <= high,
            }
        )
    if "small_cnn" in models:
        accuracy = models["small_cnn"]["accuracy"]
        images = "all" if config.train_subset is None else f"{config.train_subset:,} (the full profile: all)"
        goal = (
            f"small CNN test accuracy >= {WRITEUP_ACCURACY['small_cnn']} (the write-up's); trained on {images} "
            f"CIFAR-10 training images for {config.small_cnn_train.epochs} epochs"
        )
        found.append({"goal": goal, "measured": accuracy, "met": accuracy >= WRITEUP_ACCURACY["small_cnn"]})
    msp_cnn = _find(records, model="small_cnn", detector="msp", ood_set="cifar100")
    if msp_cnn is not None and msp_resnet is not None:
        found.append(
            {
                "goal": "small CNN worse than ResNet-20 at MSP OOD detection (AUROC vs CIFAR-100 subset)",
                "measured": f"{msp_cnn['auroc']:.4f} vs {msp_resnet['auroc']:.4f}",
                "met": msp_cnn["auroc"] < msp_resnet["auroc"],
            }
        )
    return found


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _bold_best(cells: list[str], higher_better: bool) -> list[str]:
    """Bold the best of a column of formatted numbers (all of them when tied as displayed)."""
    numbers = [float(c) for c in cells if c != "—"]
    if not numbers:
        return cells
    best = f"{(max if higher_better else min)(numbers):.1f}"
    return [f"**{c}**" if c == best else c for c in cells]


def _metric_table(config: OodConfig, results: dict[str, Any], model: str, metric: str) -> str:
    """Detectors x OOD sets for one model and metric (%), with near/far means; best per column in bold."""
    higher_better = metric != "fpr95"
    records, summary = results["metrics"], results["summary"]
    sets = list(results["data"]["ood"])
    distances = [d["distance"] for d in results["data"]["ood"].values()]
    groups = [g for g in ("near", "far") if g in distances]
    averaged = [g for g in groups if distances.count(g) > 1]  # a mean over one set would repeat its column
    columns: list[list[str]] = []
    for name in sets:
        columns.append([_pct(_find(records, model=model, detector=d, ood_set=name)[metric]) for d in config.detectors])
    for group in averaged:
        key = f"{group}_{metric}"
        columns.append([_pct(_find(summary, model=model, detector=d)[key]) for d in config.detectors])
    columns = [_bold_best(column, higher_better) for column in columns]
    headers = ["detector", *sets, *(f"mean {g}-OOD" for g in averaged)]
    rows = [[DETECTORS[d].name, *(column[i] for column in columns)] for i, d in enumerate(config.detectors)]
    if "msp" in config.detectors and metric == "auroc":
        headers.append(f"beats MSP ({' / '.join(groups)})")
        for row, detector in zip(rows, config.detectors, strict=True):
            marks = [_find(summary, model=model, detector=detector)[f"beats_msp_{g}"] for g in groups]
            row.append(" / ".join("—" if m is None else "yes" if m else "no" for m in marks))
    return table(headers, rows)


def _long_table(config: OodConfig, results: dict[str, Any]) -> str:
    rows = [
        [
            MODEL_LABELS[r["model"]],
            _pct(results["models"][r["model"]]["accuracy"]),
            DETECTORS[r["detector"]].name,
            r["ood_set"],
            *(_pct(r[m]) for m in METRICS),
        ]
        for r in results["metrics"]
    ]
    headers = ["model", "ID acc. %", "detector", "OOD set", "AUROC %", "AUPR-In %", "AUPR-Out %", "FPR@95TPR %"]
    return table(headers, rows)


def _write_artifacts(stage: Path, config: OodConfig, results: dict[str, Any], scores: dict[str, Scores]) -> None:
    write_json(stage / "results.json", results)
    accuracy = {name: info["accuracy"] for name, info in results["models"].items()}
    write_csv(stage / "results.csv", [{**r, "id_accuracy": accuracy[r["model"]]} for r in results["metrics"]])
    write_text(stage / "table.md", _long_table(config, results))
    names = {d: DETECTORS[d].name for d in config.detectors}
    figures: list[tuple[str, str]] = []
    if "msp" in config.detectors:
        near = "cifar100" if "cifar100" in results["data"]["ood"] else next(iter(results["data"]["ood"]))
        per_model = {
            f"{MODEL_LABELS[m]} ({100 * accuracy[m]:.1f}%)": (ids["msp"], {s: v["msp"] for s, v in ood.items()})
            for m, (ids, ood) in scores.items()
        }
        save_figure(overview(per_model, detector="MSP", near=near), stage / "overview_msp.png")
        figures.append(("overview_msp.png", "MSP per model: histogram, ROC and precision-recall (the seed's table)"))
    for model, (id_scores, ood_scores) in scores.items():
        label = f"{MODEL_LABELS[model]} (ID accuracy {100 * accuracy[model]:.1f}%)"
        hist = histogram_grid(
            {names[d]: id_scores[d] for d in config.detectors},
            {s: {names[d]: v[d] for d in config.detectors} for s, v in ood_scores.items()},
            title=label,
            id_label="ID (CIFAR-10 test)",
        )
        save_figure(hist, stage / f"histograms_{model}.png")
        pairs = {s: {names[d]: (id_scores[d], v[d]) for d in config.detectors} for s, v in ood_scores.items()}
        save_figure(roc_pr_grid(pairs, title=label), stage / f"curves_{model}.png")
        figures.append((f"histograms_{model}.png", f"{MODEL_LABELS[model]}: score histograms"))
        figures.append((f"curves_{model}.png", f"{MODEL_LABELS[model]}: ROC and precision-recall curves"))
    write_text(stage / "report.md", _report(config, results, figures))


def _beats_msp_lines(config: OodConfig, results: dict[str, Any]) -> list[str]:
    lines = []
    for model in config.models:
        parts = []
        for group in ("near", "far"):
            rows = [r for r in results["summary"] if r["model"] == model and r[f"beats_msp_{group}"] is not None]
            if rows:
                winners = [DETECTORS[r["detector"]].name for r in rows if r[f"beats_msp_{group}"]]
                parts.append(f"{group}-OOD: {', '.join(winners) or 'none'}")
        if parts:
            lines.append(f"- **{MODEL_LABELS[model]}** — {'; '.join(parts)}.")
    return lines


def _report(config: OodConfig, results: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    data, d = results["data"], config.detector
    set_rows = [["ID: CIFAR-10 test", "in-distribution", data["id"]["size"], data["id"]["source"]]]
    set_rows += [[name, f"{info['distance']}-OOD", info["size"], info["source"]] for name, info in data["ood"].items()]
    model_rows = [
        [
            info["label"],
            info["source"],
            f"{info['parameters']:,}",
            f"{100 * info['accuracy']:.2f}%",
            f"{100 * WRITEUP_ACCURACY[name]:.0f}%",
        ]
        for name, info in results["models"].items()
    ]
    lines = [
        "# Out-of-distribution detection on CIFAR-10",
        "",
        f"{len(config.detectors)} post-hoc detectors on {len(config.models)} CIFAR-10 classifier(s), each tested "
        f"against {len(data['ood'])} OOD set(s). Detectors that need in-distribution statistics are fitted on "
        f"{data['fit']['size']} CIFAR-10 *training* images; every score is computed on test data.",
        "",
        "**Conventions.** A score is higher for inputs that look more in-distribution; in-distribution is the "
        "positive class. AUROC, AUPR-In (ID positive), AUPR-Out (OOD positive, score negated) and FPR@95%TPR "
        "(the fraction of OOD images kept by the highest threshold that keeps at least 95% of ID images, no "
        "interpolation) are computed with scikit-learn on the raw scores. All numbers are in %.",
        "",
        "## Data",
        "",
        table(["set", "role", "images", "source"], set_rows),
        "The CIFAR-100 set leaves out the classes whose images a CIFAR-10 label also fits: "
        f"{', '.join(config.cifar100_exclude) or 'none'} (see `dlapps.data.ood.CIFAR10_OVERLAP` for why each).",
        "",
        "## Models",
        "",
        table(["model", "weights", "parameters", "ID accuracy (this run)", "course write-up"], model_rows),
        "## AUROC (%, higher is better; best per column in bold)",
        "",
    ]
    headings = {
        m: f"### {MODEL_LABELS[m]} (ID accuracy {100 * results['models'][m]['accuracy']:.1f}%)" for m in config.models
    }
    for model in config.models:
        lines += [headings[model], "", _metric_table(config, results, model, "auroc")]
    lines += ["## FPR@95%TPR (%, lower is better; best per column in bold)", ""]
    for model in config.models:
        lines += [headings[model], "", _metric_table(config, results, model, "fpr95")]
    if "msp" in config.detectors:
        lines += ["## Which detectors beat MSP (mean AUROC)", "", *_beats_msp_lines(config, results), ""]
    if results["checks"]:
        check_rows = [
            [
                c["goal"],
                c["measured"] if isinstance(c["measured"], str) else f"{c['measured']:.4f}",
                "yes" if c["met"] else "**no**",
            ]
            for c in results["checks"]
        ]
        lines += ["## Checks against the issue's goals", "", table(["goal", "measured", "met"], check_rows)]
    lines += ["## Figures", ""]
    lines += [f"{caption}:\n\n![{caption}]({name})\n" for name, caption in figures]
    lines += [
        "## Detector settings and deviations from the papers",
        "",
        f"- ODIN: T = {d.odin_temperature:g}, ε = {d.odin_epsilon:g} (pixel units), the paper's CIFAR values, "
        "not tuned on OOD data.",
        "- Mahalanobis: class means and a tied covariance of penultimate features, no input preprocessing and "
        "no layer ensemble (both need OOD validation data); OpenOOD's MDS.",
        f"- KNN: k = {d.knn_k}, bank = the {data['fit']['size']} fitting images' normalised penultimate features "
        "(the paper: all 50,000 with k = 50).",
        f"- ViM: principal dimension {d.vim_dim or 'N/2 (the paper rule for small N)'}; ReAct: clip at the "
        f"{d.react_percentile:g}th percentile of ID activations, then energy.",
        "",
        "## All metrics",
        "",
        _long_table(config, results),
        *comparison_section(compare(config, results)),
        *environment_section(results, "from start to the figures, not counting drawing them"),
    ]
    return "\n".join(lines)


def compare(config: OodConfig, results: dict[str, Any]) -> list[Comparison]:
    """The write-up's accuracies, MSP AUROC and finding; OpenOOD v1.5's means as the order of magnitude."""
    rows = [
        Comparison(f"{MODEL_LABELS[name]} CIFAR-10 test accuracy", ours=info["accuracy"],
                   writeup=WRITEUP_ACCURACY[name],
                   source="published weights" if "published" in info else "trained here")
        for name, info in results["models"].items()
    ]  # fmt: skip
    msp = {m: _find(results["metrics"], model=m, detector="msp", ood_set="cifar100") for m in config.models}
    if msp.get("small_cnn"):
        rows.append(
            Comparison("small CNN MSP AUROC, CIFAR-10 vs CIFAR-100 subset", ours=msp["small_cnn"]["auroc"],
                       writeup=WRITEUP_SMALL_CNN_MSP_AUROC, source="the write-up's figure is from its exercise 2.2")
        )  # fmt: skip
    if msp.get("small_cnn") and msp.get("resnet20"):
        rows.append(
            Comparison.claim(
                "ResNet-20 detects CIFAR-100 images better than the small CNN (MSP)",
                msp["resnet20"]["auroc"] > msp["small_cnn"]["auroc"],
                f"AUROC {msp['resnet20']['auroc']:.3f} vs {msp['small_cnn']['auroc']:.3f}",
            )
        )
    for detector, anchors in OPENOOD_ANCHORS.items():  # ResNet-20 alone is near OpenOOD's accuracy
        mine = _find(results["summary"], model="resnet20", detector=detector)
        for group, anchor in zip(("near", "far"), anchors, strict=True):
            if mine and mine[f"{group}_auroc"] is not None:
                rows.append(
                    Comparison(
                        f"{MODEL_LABELS['resnet20']} {DETECTORS[detector].name} AUROC, {group}-OOD mean",
                        ours=mine[f"{group}_auroc"],
                        literature=anchor / 100,
                        source="OpenOOD v1.5, ResNet-18 at ~95%, other OOD sets: order of magnitude only",
                    )
                )
    return rows


STUDY = Study(
    name="ood",
    summary="Post-hoc OOD detectors (MSP ... ReAct) on a small CNN and ResNet-20: CIFAR-10 vs CIFAR-100, MNIST, noise.",
    default_config=OodConfig,
    profiles={
        "quick": {
            "id_subset": 2000,
            "ood_subset": 1000,
            "fit_subset": 5000,
            "train_subset": 10_000,
        },
        "full": {},
    },
    run=run,
    compare=compare,
)
