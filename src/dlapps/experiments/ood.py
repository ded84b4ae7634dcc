"""Study ``ood``: post-hoc OOD detectors on a classifier and a weaker baseline.

In-distribution (ID) is a dataset's test split (CIFAR-10 by default); OOD sets are CIFAR-100 without the
classes overlapping CIFAR-10 (near-OOD), MNIST, FakeData and pixel noise (far-OOD), or any dataset given by
name or path. The models are any two classifiers (by default the published ResNet-20 and the course's small
CNN trained here); detectors needing ID statistics are fitted on the dataset's *training* images. Writes
every metric per model x detector x OOD set, ID accuracy, score histograms, ROC and PR curves and a report
that says which detectors beat MSP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from dlapps.config import PositiveInt, require
from dlapps.data import get_dataset
from dlapps.data.ood import OOD_SET, OodRequest, choices_record, choose_ood_sets, load_chosen, set_label
from dlapps.experiments.base import STUDIES, OnDataset, RunContext, Study, StudyOutput
from dlapps.models.classifier import align_labels
from dlapps.ood import (
    DETECTORS,
    DetectorEvaluation,
    DetectorSettings,
    evaluate_detectors,
    fast_detectors,
    summarize_detectors,
)
from dlapps.ood.plots import detector_figures, overview
from dlapps.ood.tables import beats_msp_lines, detector_table, find_record, metrics_table
from dlapps.report.comparison import Comparison
from dlapps.report.markdown import Heading, Image, table
from dlapps.train import TrainConfig
from dlapps.train.model_spec import ModelSpec
from dlapps.train.writeup import WRITEUP_RESNET_TRAINING, writeup_cnn, writeup_resnet

WRITEUP_ACCURACY = {"small_cnn": 0.64, "resnet20": 0.81}  # the course write-up's CIFAR-10 test accuracies
WRITEUP_SMALL_CNN_MSP_AUROC = 0.63  # its small CNN, CIFAR-10 vs its CIFAR-100 subset (exercise 2.2's baseline)
# OpenOOD v1.5, CIFAR-10, ResNet-18 at ~95% accuracy: (near-OOD, far-OOD) AUROC in %. Its near-OOD sets are
# CIFAR-100 and TinyImageNet, its far-OOD ones MNIST, SVHN, Textures and Places365: context, not a target.
OPENOOD_ANCHORS = {"msp": (88.03, 90.73), "knn": (90.64, 92.96), "vim": (88.68, 93.48)}


DETECTOR_NOTES = {
    "odin": "the paper's CIFAR values (ε in pixel units), not tuned on OOD data",
    "mahalanobis": "class means and a tied covariance of penultimate features, no input preprocessing and no layer "
    "ensemble (both need OOD validation data): OpenOOD's MDS",
    "vim": "dim None: the paper's rule (N/2 for small N)",
    "nac": "pytorch-ood's numerics (log(p + 1e-12) in the KL gradient, geometric bins), which pytorch-ood 0.4 "
    "matches to the last digit",
    "gen": "probabilities clamped to [1e-7, 1 − 1e-7] as in pytorch-ood",
}  # where a detector here differs from its paper, or a setting needs a word


@dataclass(frozen=True)
class OodConfig(OnDataset):
    model: ModelSpec = field(
        default_factory=lambda: ModelSpec(
            "resnet20_cifar10",
            train=TrainConfig(epochs=50, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="cosine"),
        )
    )
    baseline: ModelSpec = field(
        default_factory=lambda: ModelSpec(
            "small_cnn", train=TrainConfig(epochs=3, batch_size=128, optimizer="adam", lr=1e-3), augment=False
        )
    )
    with_baseline: bool = True  # analyse the baseline too, beside the model
    # a third classifier, analysed beside the two when with_companion (e.g. a ResNet trained here beside the
    # published one); by default the write-up's own ResNet-20, as residual-cnn's writeup profile trains it
    companion: ModelSpec = field(default_factory=lambda: ModelSpec("cifar_resnet", train=WRITEUP_RESNET_TRAINING))
    with_companion: bool = False
    detectors: tuple[Annotated[str, DETECTORS], ...] = tuple(DETECTORS)
    # registered sets, or any dataset name or path (``path:near`` / ``path:far`` declares its distance); none: every
    # registered set that suits the ID data (never the ID set itself)
    ood_sets: tuple[Annotated[str, OOD_SET], ...] = ()
    ood_exclude: tuple[str, ...] | None = None  # classes left out of labelled OOD sets (None: those the ID data shares)
    resize_ood: bool = False  # resize / convert a user's OOD images that do not fit the ID images
    id_subset: PositiveInt | None = None  # ID test images (None: all)
    ood_subset: PositiveInt | None = None  # images per OOD set (None: all; 2,000 generated)
    fit_subset: PositiveInt | None = 20_000  # ID training images for detector statistics (None: all)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    batch_size: PositiveInt | None = None  # images per forward pass (None: as many as run fastest on the device)
    seed: int = 0

    def validate(self) -> None:
        require(len(self.detectors) > 0, "detectors must not be empty")
        require(len(set(self.detectors)) == len(self.detectors), f"detectors are repeated: {self.detectors}")
        labels = [set_label(name) for name in self.ood_sets]
        require(len(set(labels)) == len(labels), f"ood_sets must have distinct names, got {', '.join(labels)}")
        require(
            self.fit_subset is None or "knn" not in self.detectors or self.fit_subset >= self.knn_k(),
            f"fit_subset={self.fit_subset} is smaller than KNN's k={self.knn_k()}",
        )

    def knn_k(self) -> int:
        return self.detector.hparams_of("knn")["k"]

    def specs(self) -> dict[str, ModelSpec]:
        """Role -> model, the baseline and the companion (when analysed) first."""
        roles = {"baseline": self.with_baseline, "companion": self.with_companion, "model": True}
        return {role: getattr(self, role) for role, analysed in roles.items() if analysed}


@STUDIES.register("ood")
class OOD(Study):
    summary = "Post-hoc OOD detectors (MSP ... NAC) on two classifiers (CIFAR-10 by default): near- and far-OOD."
    config_type = OodConfig
    profiles = {
        "quick": {
            "id_subset": 2000,
            "ood_subset": 1000,
            "fit_subset": 5000,
            "baseline.train_subset": 10_000,
            "detectors": fast_detectors(),
        },
        "full": {},
        # the write-up's comparison: its small CNN beside its own ResNet (81%), CIFAR-100 without CIFAR-10's
        # classes and FakeData; the published ResNet-20 beside them
        "writeup": {
            **writeup_cnn("baseline"),
            **writeup_resnet("companion"),
            "with_companion": True,
            "ood_sets": ("cifar100", "fakedata"),
            "detectors": tuple(d for d in DETECTORS if d != "nac"),  # NAC's backward passes would double its time
        },
    }
    exercise = (4, "1", "out-of-distribution detection")

    def default_ood_sets(self, config: OodConfig) -> list[str]:
        return [] if config.ood_sets else [c.entry for c in choose_ood_sets(config.dataset)[0]]

    def run(self, config: OodConfig, ctx: RunContext) -> StudyOutput:
        dataset = get_dataset(config.dataset)
        # The sets that can be wrong come first, so that one that does not fit fails in seconds.
        size = config.model.input_size()
        test = config.load(ctx, model_size=size)
        chosen, left_out = choose_ood_sets(config.dataset, config.ood_sets)
        request = OodRequest(ctx.data_root, ctx.download, config.ood_subset, config.seed, test.image_shape,
                             config.dataset, test.classes, config.ood_exclude)  # fmt: skip
        ood = {c.label: load_chosen(c, request, resize=config.resize_ood) for c in chosen}
        train = config.load(ctx, "train", model_size=size)
        id_data, fit_data = test.subset(config.id_subset, config.seed), train.subset(config.fit_subset, config.seed)
        distances = {c.label: c.distance for c in chosen}
        reasons = {c.label: c.reason for c in chosen}
        models, records, scores = {}, [], {}
        with ctx.progress() as progress:
            task = progress.add_task("ood", total=len(config.specs()))
            for role, spec in config.specs().items():
                progress.update(task, description=f"ood: {role}")
                classifier = ctx.classifier(spec, test, dataset=dataset, image_size=config.image_size,
                                            test_subset=config.id_subset, progress=progress, train=train, test=test)  # fmt: skip
                fit, ids = (align_labels(classifier, dataset, d, spec.class_map) for d in (fit_data, id_data))
                id_classes = None if fit.classes == fit_data.classes else tuple(sorted(set(fit.labels.tolist())))
                detectors = config.detector.create(config.detectors, id_classes)
                scores[role] = evaluation = evaluate_detectors(detectors, classifier.module, fit, ids, ood,
                                                               batch_size=config.batch_size)  # fmt: skip
                models[role] = {"label": classifier.title, "accuracy": evaluation.accuracy,
                                "parameters": classifier.parameter_count,
                                "detector_seconds": evaluation.seconds, **classifier.describe(),
                                "history": classifier.info.get("history")}  # fmt: skip
                records += evaluation.records(distances, model=role)
                progress.console.print(f"{classifier.title}: ID accuracy {evaluation.accuracy:.4f}; fitting and "
                                       f"scoring took {evaluation.seconds:.0f} s")  # fmt: skip
                progress.advance(task)
        results = {
            "data": {
                "dataset": config.dataset, "title": dataset.title,
                "id": {"source": id_data.source, "size": len(id_data)},
                "fit": {"source": fit_data.source, "size": len(fit_data)},
                "ood": {name: {"source": data.source, "size": len(data), "distance": distances[name],
                               "why": reasons[name]} for name, data in ood.items()},
                "left_out": choices_record(chosen, left_out)["left_out"],
            },
            "models": models,
            "metrics": records,
            "summary": summarize_detectors(records),
        }  # fmt: skip
        accuracy = {role: info["accuracy"] for role, info in models.items()}
        rows = [{**r, "id_accuracy": accuracy[r["model"]]} for r in records]
        return StudyOutput(results, rows, self._figures(config, results, scores))

    def _figures(
        self, config: OodConfig, results: dict[str, Any], scores: dict[str, DetectorEvaluation]
    ) -> dict[str, Any]:
        names = {d: DETECTORS[d].name for d in config.detectors}
        models, found = results["models"], {}
        if "msp" in config.detectors:
            sets = results["data"]["ood"]
            near = next((name for name, info in sets.items() if info["distance"] == "near"), next(iter(sets)))
            per_model = {
                f"{models[m]['label']} ({100 * models[m]['accuracy']:.1f}%)":
                    (e.id_scores["msp"], {s: v["msp"] for s, v in e.ood_scores.items()})
                for m, e in scores.items()
            }  # fmt: skip
            found["overview_msp.png"] = overview(per_model, detector="MSP", near=near)
        for role, evaluation in scores.items():
            label = f"{models[role]['label']} (ID accuracy {100 * models[role]['accuracy']:.1f}%)"
            found[f"histograms_{role}.png"], found[f"curves_{role}.png"] = detector_figures(
                evaluation, names, title=label, id_label=f"ID ({results['data']['title']} test)"
            )
        return found

    def title(self, config: OodConfig, results: dict[str, Any]) -> str:
        return f"Out-of-distribution detection on {results['data']['title']}"

    def table(self, config: OodConfig, results: dict[str, Any]) -> str:
        return metrics_table(results["metrics"], {role: info["label"] for role, info in results["models"].items()},
                             {role: info["accuracy"] for role, info in results["models"].items()})  # fmt: skip

    def body(self, config: OodConfig, results: dict[str, Any]) -> list:
        data, models = results["data"], results["models"]
        distances = {name: info["distance"] for name, info in data["ood"].items()}
        set_rows = [[f"ID: {data['title']} test", "in-distribution", data["id"]["size"], data["id"]["source"], ""]]
        set_rows += [[name, f"{info['distance']}-OOD", info["size"], info["source"], info.get("why", "")]
                     for name, info in data["ood"].items()]  # fmt: skip
        left_out = [f"{c['set']} ({c['why']})" for c in data.get("left_out", [])]
        model_rows = [[info["label"], info["reference"] or "—", f"{info['parameters']:,}", f"{100 * info['accuracy']:.2f}%"]
                      for info in models.values()]  # fmt: skip
        blocks: list = [
            f"{len(config.detectors)} post-hoc detectors on {len(models)} {data['title']} classifier(s), each tested "
            f"against {len(data['ood'])} OOD set(s). Detectors that need in-distribution statistics are fitted on "
            f"{data['fit']['size']} {data['title']} *training* images; every score is computed on test data.",
            "**Conventions.** A score is higher for inputs that look more in-distribution; in-distribution is the "
            "positive class. AUROC, AUPR-In (ID positive), AUPR-Out (OOD positive, score negated) and FPR@95%TPR "
            "(the fraction of OOD images kept by the highest threshold that keeps at least 95% of ID images, no "
            "interpolation) are computed with scikit-learn on the raw scores. All numbers are in %.",
            Heading("Data"),
            table(["set", "role", "images", "source", "why"], set_rows),
        ]
        if left_out:
            blocks.append(f"Left out: {'; '.join(left_out)}.")
        if any("without" in info["source"] for info in data["ood"].values()):
            blocks.append("A labelled OOD set leaves out the classes that an in-distribution label also fits: those "
                          "named alike, and for CIFAR-10 the CIFAR-100 classes listed in "
                          "`dlapps.data.ood.CIFAR10_OVERLAP`, with why each.")  # fmt: skip
        blocks += [
            Heading("Models"),
            table(["model", "known to score", "parameters", "ID accuracy (this run)"], model_rows),
        ]
        for metric, heading in (("auroc", "AUROC (%, higher is better; best per column in bold)"),
                                ("fpr95", "FPR@95%TPR (%, lower is better; best per column in bold)")):  # fmt: skip
            blocks.append(Heading(heading))
            for role, info in models.items():
                blocks += [Heading(f"{info['label']} (ID accuracy {100 * info['accuracy']:.1f}%)", 2),
                           detector_table(results["metrics"], results["summary"], distances, role, metric, config.detectors)]  # fmt: skip
        if "msp" in config.detectors:
            blocks += [
                Heading("Which detectors beat MSP (mean AUROC)"),
                beats_msp_lines(results["summary"], {role: info["label"] for role, info in results["models"].items()}),
            ]
        blocks.append(Heading("Figures"))
        if "msp" in config.detectors:
            blocks += [
                "MSP per model: histogram, ROC and precision-recall:",
                Image("overview_msp.png", "MSP per model"),
            ]
        for role, info in models.items():
            blocks += [Image(f"histograms_{role}.png", f"{info['label']}: score histograms"),
                       Image(f"curves_{role}.png", f"{info['label']}: ROC and precision-recall curves")]  # fmt: skip
        blocks += [
            Heading("Detector settings and deviations from the papers"),
            "\n".join(
                f"- {DETECTORS[d].name}: "
                + (
                    ", ".join(f"{k} = {v}" for k, v in config.detector.hparams_of(d).items() if k != "classes")
                    or "no settings"
                )
                + (f"; {DETECTOR_NOTES[d]}" if d in DETECTOR_NOTES else "")
                for d in config.detectors
            )
            + f"\n\nKNN's bank holds the {data['fit']['size']} fitting images' normalised penultimate features (the "
            'paper: all 50,000, k = 50). Set any of them by name: `--set \'detector={"knn": {"k": 10}}\'`.',
            Heading("All metrics"),
            self.table(config, results),
        ]
        return blocks

    def no_reference(self, config: OodConfig) -> str | None:
        if not config.is_dataset("cifar10"):
            return f"the write-up and OpenOOD take CIFAR-10 as in-distribution; this run takes {get_dataset(config.dataset).title}"
        return None

    def compare(self, config: OodConfig, results: dict[str, Any]) -> list[Comparison]:
        """The write-up's accuracies, MSP AUROC and finding for its setup (a small CNN trained here, a ResNet-20);
        OpenOOD v1.5's means for the published ResNet-20, as the order of magnitude."""
        if self.no_reference(config):
            return []
        specs, models, rows = config.specs(), results["models"], []
        which = {role: name for role, spec in specs.items() if (name := _writeup_model(spec)) is not None}
        # where a ResNet-20 is trained here, it is the write-up's (its own, at 81%); the published one is not
        own_resnet = any(name == "resnet20" and specs[role].kind == "train" for role, name in which.items())
        for role, name in which.items():
            if not (own_resnet and specs[role].is_published):
                rows.append(Comparison(f"{models[role]['label']}: CIFAR-10 test accuracy", ours=models[role]["accuracy"],
                                       writeup=WRITEUP_ACCURACY[name]))  # fmt: skip
        msp = {role: find_record(results["metrics"], model=role, detector="msp", ood_set="cifar100") for role in which}
        cnn = next((role for role, name in which.items() if name == "small_cnn" and msp[role]), None)
        if cnn is not None:
            rows.append(
                Comparison("small CNN MSP AUROC, CIFAR-10 vs CIFAR-100 subset", ours=msp[cnn]["auroc"],
                           writeup=WRITEUP_SMALL_CNN_MSP_AUROC, source="the write-up's figure is from its exercise 2.2")
            )  # fmt: skip
            for role in (r for r, name in which.items() if name == "resnet20" and msp[r]):
                rows.append(
                    Comparison.claim(
                        f"the ResNet detects CIFAR-100 images better than the small CNN (MSP): {models[role]['label']}",
                        msp[role]["auroc"] > msp[cnn]["auroc"],
                        f"AUROC {msp[role]['auroc']:.3f} vs {msp[cnn]['auroc']:.3f}",
                    )
                )
        published = [role for role, spec in specs.items() if spec.is_published and spec.name == "resnet20_cifar10"]
        for role in published:  # near OpenOOD's ResNet-18 in accuracy
            for detector, anchors in OPENOOD_ANCHORS.items():
                mine = find_record(results["summary"], model=role, detector=detector)
                for group, anchor in zip(("near", "far"), anchors, strict=True):
                    if mine and mine[f"{group}_auroc"] is not None:
                        rows.append(
                            Comparison(
                                f"ResNet-20 {DETECTORS[detector].name} AUROC, {group}-OOD mean",
                                ours=mine[f"{group}_auroc"], literature=anchor / 100,
                                source="OpenOOD v1.5, ResNet-18 at ~95%, other OOD sets: order of magnitude only",
                            )
                        )  # fmt: skip
        return rows


def _writeup_model(spec: ModelSpec) -> str | None:
    """Which of the write-up's two models ``spec`` is: its small CNN trained here, or a ResNet-20."""
    if spec.name == "small_cnn" and spec.kind == "train":
        return "small_cnn"
    if spec.is_published and spec.name == "resnet20_cifar10":
        return "resnet20"
    if spec.kind == "train" and spec.name in ("resnet20", "cifar_resnet"):  # cifar_resnet's defaults: ResNet-20
        return "resnet20"
    return None
