"""Study ``audit`` (``dlapps audit``): what a practitioner asks of a trained classifier before trusting it, in one
report. Five sections on one model and one dataset, each cached on its own (a rerun redoes only what changed):

- accuracy: top-1 (top-5 with more than 10 classes), per class, the confusion matrix;
- calibration: ECE (15 bins), NLL, Brier score and reliability diagram, and the temperature that minimises the
  NLL on one half of the test images, with its effect on the other half;
- explanations: CAM methods on correctly and wrongly classified images, their faithfulness (average drop,
  deletion / insertion AUC), and Adebayo et al.'s sanity check (maps against those of a randomised head);
- OOD detection: every detector against OOD sets (by default another natural-image dataset, FakeData and noise
  of the same shape);
- robustness: the standard ensemble (APGD-CE, APGD-T, Square) at the standard ε for the images, L∞ and L2, and
  over an ε sweep beside PGD with per-sample early stop: robust accuracy, the images each attack was first to
  break, the effort per image, the ε at which half of the correctly classified images are fooled; and whether the
  number can be believed (the sanity checks of Carlini et al. 2019, each flagged with its evidence).

A one-screen summary with a verdict per section opens the report. A model with more outputs than the dataset
has classes (an ImageNet model on Imagenette) is audited as a classifier of the dataset's classes: its logits
for those classes only.
"""

from __future__ import annotations

import copy
import math
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch

from dlapps.attacks import (
    ATTACKS,
    PIXEL,
    STANDARD_ENSEMBLE,
    Attack,
    half_fooled,
    make_attack,
    robustness_at,
    run_ensemble,
    trust_checks,
)
from dlapps.config import GreyLevels, PositiveInt, require, to_dict
from dlapps.data import ImageArrays, get_dataset
from dlapps.data.corruptions import CORRUPTIONS, SEVERITIES, corrupted_in_rotation
from dlapps.data.ood import OOD_SET, OodChoice, OodRequest, choices_record, choose_ood_sets, load_chosen
from dlapps.errors import DataError
from dlapps.evaluate import (
    accuracy_and_calibration,
    batched_accuracy,
    bootstrap_ci,
    confidence_reliability,
    evaluate_corruptions,
    mean_corruption_accuracy,
    predict,
    relative_corruption_error,
)
from dlapps.experiments.base import (
    STUDIES,
    OnDataset,
    RunContext,
    Study,
    StudyOutput,
    run_study,
)
from dlapps.explain import CAM_METHODS, compute_cam, faithfulness, head_randomisation_check
from dlapps.models import Classifier
from dlapps.models.classifier import class_outputs, restrict
from dlapps.models.hooks import model_device
from dlapps.models.layout import inference_batch
from dlapps.ood import DETECTORS, create_detector, evaluate_detectors, fast_detectors, summarize_detectors
from dlapps.ood.tables import against_msp_lines, beats_msp_lines, detector_table
from dlapps.report import figures
from dlapps.report.markdown import Heading, Image, format_number, percent, table, with_interval
from dlapps.report.runs import RelayedCache, RunCache, cache_key
from dlapps.train import resolve_device
from dlapps.train.model_spec import ModelSpec
from dlapps.train.ray_cluster import RayTask, TaskRelay, put, run_tasks


@dataclass(frozen=True)
class AuditConfig(OnDataset):
    model: ModelSpec = field(default_factory=ModelSpec)
    test_subset: PositiveInt | None = None  # images for accuracy and calibration (None: the whole split)
    calibration_bins: PositiveInt = 15
    cam_methods: tuple[Annotated[str, CAM_METHODS], ...] = ("gradcam", "gradcam++", "layercam", "scorecam")
    layer: str | None = None  # None: the model's known CAM layer, else its last spatial feature map
    grid_images: PositiveInt = 6  # correctly and as many wrongly classified images in the grid
    faithfulness_images: PositiveInt = 500
    deletion_images: PositiveInt = 100
    deletion_steps: PositiveInt = 16
    scorecam_images: PositiveInt = 50
    sanity_images: PositiveInt = 50
    ood_sets: tuple[Annotated[str, OOD_SET], ...] = ()  # none given: another natural dataset, FakeData, noise
    resize_ood: bool = False  # resize / convert OOD sets given here that do not fit the images
    detectors: tuple[Annotated[str, DETECTORS], ...] = tuple(DETECTORS)
    id_subset: PositiveInt | None = 5000  # test images scored by the detectors
    ood_subset: PositiveInt | None = 2000  # images per OOD set
    fit_subset: PositiveInt | None = 20_000  # training images the detectors are fitted on
    corruptions: tuple[Annotated[str, CORRUPTIONS], ...] = tuple(CORRUPTIONS)  # Hendrycks & Dietterich's 15
    severities: tuple[int, ...] = SEVERITIES
    corruption_images: PositiveInt | None = 1000  # test images corrupted, 75 times each
    epsilons: tuple[GreyLevels, ...] = (0.5, 1, 2, 4, 8, 16)  # L∞ sweep, grey levels (units of 1/255)
    eps: GreyLevels | None = None  # the reported L∞ ε (None: 8/255 up to 64-px images, 4/255 beyond)
    l2_eps: float | None = None  # the reported L2 ε (None: 0.5 up to 64-px images, 3 beyond); 0: no L2 attack
    attack_steps: PositiveInt = 10  # PGD's, in the sweep
    ensemble: tuple[Annotated[str, ATTACKS], ...] = STANDARD_ENSEMBLE  # each on what the ones before left standing
    sweep_ensemble: tuple[Annotated[str, ATTACKS], ...] = ()  # the sweep's attacks beside PGD (none: the ensemble)
    ensemble_steps: PositiveInt = 100  # iterations of each gradient attack of the ensemble
    square_queries: PositiveInt = 5000  # queries of each score-based attack of the ensemble
    large_eps: GreyLevels = 64  # where robust accuracy must be ~0
    attack_images: PositiveInt | None = 1000
    batch_size: PositiveInt | None = None  # images per forward pass (None: as many as run fastest on the device)
    scale_counts: bool = False  # the image counts above are for 32×32 images: fewer for larger ones (quick)
    resamples: PositiveInt = 1000  # bootstrap resamples of the test images behind every 95% interval
    seed: int = 0

    def for_images(self, shape: tuple[int, int, int]) -> AuditConfig:
        """With ``scale_counts``, the counts divided by the square root of how many times more pixels the images
        have than 32×32 ones (224-pixel images: 7 times fewer), down to a floor that keeps each number readable."""
        factor = math.sqrt(shape[1] * shape[2] / 1024)
        if not self.scale_counts or factor <= 1:
            return self
        floors = {"faithfulness_images": 20, "deletion_images": 5, "sanity_images": 5, "id_subset": 100,
                  "ood_subset": 100, "fit_subset": 200, "attack_images": 50, "corruption_images": 50}  # fmt: skip
        scaled = {key: max(floor, round(getattr(self, key) / factor)) for key, floor in floors.items()
                  if getattr(self, key) is not None}  # fmt: skip
        return replace(self, **{k: min(v, getattr(self, k)) for k, v in scaled.items()})

    def validate(self) -> None:
        require(len(self.cam_methods) > 0 and len(self.detectors) > 0, "cam_methods and detectors must not be empty")
        require(list(self.epsilons) == sorted(set(self.epsilons)) and self.epsilons, "epsilons must increase")
        require(
            self.l2_eps is None or 0 <= self.l2_eps <= 1000,
            f"l2_eps must be in [0, 1000] (0: no L2 attack), got {self.l2_eps}",
        )
        require(len(self.corruptions) > 0 and len(set(self.corruptions)) == len(self.corruptions),
                f"corruptions must be distinct and not empty, got {self.corruptions}")  # fmt: skip
        require(len(self.severities) > 0 and set(self.severities) <= set(SEVERITIES)
                and list(self.severities) == sorted(set(self.severities)),
                f"severities must increase within 1-5, got {self.severities}")  # fmt: skip
        require(any(ATTACKS[name].uses_gradient for name in self.ensemble),
                "the ensemble needs a gradient attack (e.g. apgd-ce): the sanity checks run it again, stronger")  # fmt: skip
        require(self.fit_subset is None or self.fit_subset >= 50 or "knn" not in self.detectors,
                "fit_subset must be at least 50 for the KNN detector")  # fmt: skip


SECTIONS = ("accuracy", "explanations", "ood", "corruptions", "robustness")  # in the order they run, longest last
ATTACK_RECORD = "audit-attack-"  # the start of the cache key of each attack's record


def standard_eps(config: AuditConfig, shape: tuple[int, int, int]) -> tuple[float, float]:
    """The reported L∞ ε (grey levels) and L2 ε: RobustBench's 8/255 and 0.5 up to 64-pixel images, the ImageNet
    convention (4/255, and L2 3.0) beyond, unless the config sets them."""
    small = max(shape[1:]) <= 64
    return (config.eps if config.eps is not None else 8 if small else 4,
            config.l2_eps if config.l2_eps is not None else 0.5 if small else 3.0)  # fmt: skip


@STUDIES.register("audit")
class Audit(Study):
    summary = "One classifier on one dataset: accuracy, calibration, explanations, OOD detection, robustness."
    config_type = AuditConfig
    profiles = {
        "quick": {
            "cam_methods": ("gradcam",), "faithfulness_images": 100, "deletion_images": 20, "deletion_steps": 8,
            "sanity_images": 20, "id_subset": 1000, "ood_subset": 1000, "fit_subset": 5000,
            "epsilons": (0.5, 1, 2, 4, 8), "sweep_ensemble": ("apgd-ce",), "ensemble_steps": 20, "square_queries": 300,
            "attack_images": 500, "detectors": fast_detectors(), "corruption_images": 500,
            "scale_counts": True,
        },
        "full": {},
    }  # fmt: skip
    html = True
    reads_training_split = False  # detectors are fitted on it where it is there, else on held-out test images

    def default_ood_sets(self, config: AuditConfig) -> list[str]:
        return [] if config.ood_sets else [c.entry for c in choose_ood_sets(config.dataset)[0]]

    def test_data(self, config: AuditConfig, ctx: RunContext) -> ImageArrays:
        """The audited test images, at the model's input size where the dataset's images vary."""
        return config.load(ctx, model_size=config.model.input_size(), limit=config.test_subset, seed=config.seed)

    def classifier(
        self, config: AuditConfig, ctx: RunContext, test: ImageArrays, progress=None
    ) -> tuple[Classifier, ImageArrays, tuple[int, ...] | None]:
        """The model, as a classifier of the dataset's classes where it has more outputs (named as it names them),
        the test images with those class names, and the outputs kept (None: all)."""
        dataset = get_dataset(config.dataset)
        classifier = ctx.classifier(
            config.model, test, dataset=dataset, image_size=config.image_size, progress=progress
        )
        outputs = class_outputs(classifier, dataset, test, config.model.class_map)
        if outputs is not None:
            names = tuple(classifier.classes[o] for o in outputs) if classifier.classes else test.classes
            classifier, test = restrict(classifier, outputs, names), replace(test, classes=names)
        return classifier, test, outputs

    def inputs(self, config: AuditConfig, ctx: RunContext, progress=None) -> AuditInputs:
        """The model and every image the sections read, loaded once; the OOD sets and the training images only
        where a section that reads them is not in the cache (the OOD sets first, so that sets which can be wrong
        fail before the long sections)."""
        test = self.test_data(config, ctx)
        config = config.for_images(test.image_shape)  # the counts the sections use (and are cached under)
        classifier, test, outputs = self.classifier(config, ctx, test, progress)
        inputs = AuditInputs(config, classifier, outputs, test,
                             config.batch_size or inference_batch(test.image_shape, ctx.device), ctx.device)  # fmt: skip
        missing = {name for name in ("ood", "corruptions") if not ctx.cache.has(inputs.key(name))}
        if "ood" in missing:
            inputs.ood = self._ood_data(config, ctx, test)
        if missing:
            inputs.fitting = self._scored_and_fitting_images(config, ctx, test)
        return inputs

    def run(self, config: AuditConfig, ctx: RunContext) -> StudyOutput:
        dataset = get_dataset(config.dataset)
        with ctx.progress() as progress:
            task = progress.add_task("audit: model", total=len(SECTIONS) + 1)
            inputs = self.inputs(config, ctx, progress)
            if ctx.executor == "ray":
                self.sections_on_ray([(inputs.classifier.title, inputs, ctx.cache)], ctx.device, progress)
            sections = {}
            for name in SECTIONS:
                progress.update(task, advance=1, description=f"audit: {name}")
                sections[name] = ctx.cache.get_or_compute(
                    name, inputs.settings(name), lambda _, name=name: self.section(name, inputs, ctx.cache)
                )
            config, classifier, test = inputs.config, inputs.classifier, inputs.test
            found = self._cam_grid(config, classifier, test, sections["explanations"], ctx, inputs.batch)
        results = {
            "data": {"dataset": config.dataset, "title": dataset.title, "test": test.source, "test_size": len(test),
                     "classes": list(test.classes)},
            "model": {**classifier.describe(), "restricted_to": None if inputs.outputs is None else list(inputs.outputs)},
            **sections,
        }  # fmt: skip
        results["summary"] = verdicts(results)
        found |= self._figures(config, results)
        rows = [{"section": s, "quantity": q, "value": v} for s, q, v, _ in results["summary"]]
        return StudyOutput(results, rows, found)

    def section(self, name: str, inputs: AuditInputs, cache: RunCache | RelayedCache) -> dict[str, Any]:
        """The record of section ``name``; each attack of the robustness section is cached on its own in
        ``cache``, so that an interrupted section resumes from them."""

        def memo(attack: str, settings: dict[str, Any], compute) -> dict[str, Any]:
            keyed = {**inputs.identity, "images": inputs.config.attack_images, "batch_size": inputs.config.batch_size,
                     **settings}  # fmt: skip
            return cache.get_or_compute(f"{ATTACK_RECORD}{attack}", keyed, lambda _: compute())

        return getattr(self, f"_{name}")(inputs, memo=memo)

    def sections_on_ray(
        self, audits: list[tuple[str, AuditInputs, RunCache]], device: torch.device, progress=None
    ) -> None:
        """The sections of each audit (label, inputs, cache) that are not in its cache yet, each a task on the
        Ray cluster the run joined: every audit's model and images are put in the object store once, and each
        record (a section's, an attack's) is written into its audit's cache as it arrives."""
        todo = []
        for label, inputs, cache in audits:
            missing = [name for name in SECTIONS if not cache.has(inputs.key(name))]
            if missing:
                shared, known = put(inputs.on_cpu()), cache.records(ATTACK_RECORD)
                todo += [(RayTask(f"{name} of {label}", (name, shared, known)), (cache, inputs.key(name)))
                         for name in missing]  # fmt: skip
        todo.sort(key=lambda task: -SECTIONS.index(task[0].arguments[0]))  # the longest sections first
        tasks, keys = [task for task, _ in todo], [key for _, key in todo]
        if tasks:
            run_tasks(_section_task, tasks, device=device, noun="section", progress=progress,
                      on_result=lambda index, record: keys[index][0].put(keys[index][1], record),
                      on_record=lambda index, key, record: keys[index][0].put(key, record))  # fmt: skip

    # --- sections: each returns a JSON-ready record ----------------------------------------------------

    def _accuracy(self, inputs: AuditInputs, **_) -> dict:
        config, test = inputs.config, inputs.test
        logits = predict(inputs.classifier.module, test, inputs.batch)
        return accuracy_and_calibration(logits, test.labels, classes=len(test.classes), bins=config.calibration_bins,
                                        seed=config.seed, resamples=config.resamples)  # fmt: skip

    def _explanations(self, inputs: AuditInputs, **_) -> dict:
        config, classifier, test, batch = inputs.config, inputs.classifier, inputs.test, inputs.batch
        example = test.images[:1].to(model_device(classifier.module)).float() / 255
        model, layer = classifier.module, classifier.explained_layer(example, config.layer)
        pool = test.subset(config.faithfulness_images, config.seed)
        x = pool.images.to(inputs.device).float() / 255
        with torch.no_grad():
            targets = torch.cat([model(chunk).argmax(1) for chunk in x.split(batch)])
        rows = []
        for method in config.cam_methods:
            limit = min(len(x), config.scorecam_images if method == "scorecam" else len(x))
            rows.append(faithfulness(method, model, x[:limit], layer, targets[:limit], batch_size=batch,
                                     deletion_images=config.deletion_images, deletion_steps=config.deletion_steps))  # fmt: skip
        n = min(len(x), config.sanity_images)
        sanity = head_randomisation_check(config.cam_methods[0], model, x[:n], layer, targets[:n], seed=config.seed)
        correct = (targets.cpu() == pool.labels).float().mean().item()
        return {"layer": layer, "images": len(pool), "accuracy_on_pool": correct, "methods": rows, "sanity": {
            "method": config.cam_methods[0], "images": n, "mean": float(sanity.nanmean()),
            "median": float(sanity.nanmedian()), "values": sanity.tolist()}}  # fmt: skip

    def _ood_data(self, config: AuditConfig, ctx: RunContext, test: ImageArrays) -> ChosenSets:
        """The OOD sets for the audited data, at its images' shape: a default set is made to fit (and left out
        where it is not on this machine), a user's set only when asked."""
        request = OodRequest(ctx.data_root, ctx.download, config.ood_subset, config.seed, test.image_shape,
                             config.dataset, test.classes)  # fmt: skip
        chosen, left_out = choose_ood_sets(config.dataset, config.ood_sets)
        sets = {}
        for choice in chosen:
            try:
                sets[choice.label] = (choice, load_chosen(choice, request, resize=config.resize_ood))
            except DataError as exc:
                if config.ood_sets:
                    raise
                left_out.append(replace(choice, reason=f"not readable here ({exc})"))
        return ChosenSets(sets, left_out)

    def _ood(self, inputs: AuditInputs, **_) -> dict:
        config, classifier, ood, batch = inputs.config, inputs.classifier, inputs.ood, inputs.batch
        (ids, train), test = inputs.fitting, inputs.test
        detectors = {name: create_detector(name) for name in config.detectors}
        data = {name: images for name, (_, images) in ood.sets.items()}
        evaluation = evaluate_detectors(detectors, classifier.module, train, ids, data, batch_size=batch,
                                        skip_unusable=True)  # fmt: skip
        records = evaluation.records(
            {name: choice.distance for name, (choice, _) in ood.sets.items()}, resamples=config.resamples,
            seed=config.seed)  # fmt: skip
        sets = {name: {"source": images.source, "size": len(images), "distance": choice.distance, "why": choice.reason}
                for name, (choice, images) in ood.sets.items()}  # fmt: skip
        fit = {"source": train.source, "size": len(train), "from_test": train.source == test.source}
        scores = {detector: {"id": evaluation.id_scores[detector].tolist(),
                             **{name: found[detector].tolist() for name, found in evaluation.ood_scores.items()}}
                  for detector in evaluation.id_scores}  # fmt: skip
        return {"fit": fit, "id_size": len(ids), "sets": sets, "left_out": choices_record([], ood.left_out)["left_out"],
                "skipped": evaluation.skipped, "metrics": records, "summary": summarize_detectors(records),
                "per_image": {"scores": scores}}  # fmt: skip

    def _scored_and_fitting_images(
        self, config: AuditConfig, ctx: RunContext, test: ImageArrays
    ) -> tuple[ImageArrays, ImageArrays]:
        """The ID test images the detectors score, and the images they are fitted on: training images, or where
        the dataset has no training split here, test images that are not scored."""
        train = self._training_images(config, ctx)
        ids = test.subset(config.id_subset, config.seed)
        if train is None:
            order = torch.randperm(len(test), generator=torch.Generator().manual_seed(config.seed))
            scored = min(len(test) // 2, config.id_subset or len(test))
            ids, train = test.take(order[:scored]), test.take(order[scored:]).subset(config.fit_subset, config.seed)
        return ids, train

    def _corruptions(self, inputs: AuditInputs, **_) -> dict:
        """Accuracy and calibration under the common corruptions, and whether the detectors flag corrupted
        images: each detector's AUROC of clean images against the same images corrupted (each by one corruption,
        in turn) at each severity."""
        config, batch = inputs.config, inputs.batch
        data = inputs.test.subset(config.corruption_images, config.seed)
        model, severities = inputs.classifier.module, config.severities
        found = evaluate_corruptions(model, data, config.corruptions, severities, seed=config.seed, batch_size=batch)
        labels, names = found.labels, found.names
        if not names:
            return {"images": len(data), "corruptions": [], "severities": list(severities), "skipped": found.skipped}
        right = {key: (p.predicted == labels).double() for key, p in found.corrupted.items()}
        per_image = torch.stack(list(right.values())).mean(0)
        interval = self._interval(per_image, config)
        pooled_ece = [confidence_reliability(torch.cat([found.corrupted[n, s].confidence for n in names]),
                                             torch.cat([right[n, s] for n in names]), config.calibration_bins).ece
                      for s in severities]  # fmt: skip
        _, train = inputs.fitting
        detectors = {name: create_detector(name) for name in config.detectors}
        shifted = {f"severity {s}": corrupted_in_rotation(data, names, s, config.seed) for s in severities}
        evaluation = evaluate_detectors(detectors, model, train, data, shifted, batch_size=batch, skip_unusable=True)
        flags = [{"detector": r["detector"], "severity": int(r["ood_set"].split()[-1]), "auroc": r["auroc"]}
                 for r in evaluation.records(dict.fromkeys(shifted, "far"))]  # fmt: skip
        return {
            "images": len(data), "corruptions": list(names), "severities": list(severities),
            "clean_accuracy": found.clean_accuracy, "clean_ece": found.clean.ece(labels, config.calibration_bins),
            "accuracy": {n: [found.accuracy(n, s) for s in severities] for n in names},
            "ece": {n: [found.ece(n, s, config.calibration_bins) for s in severities] for n in names},
            "mean_accuracy": mean_corruption_accuracy(found), "interval": interval,
            "relative_error": relative_corruption_error(found), "ece_by_severity": pooled_ece,
            "detectors": flags, "skipped": found.skipped,
            "skipped_detectors": evaluation.skipped, "per_image": {"accuracy": per_image.tolist()},
        }  # fmt: skip

    def _training_images(self, config: AuditConfig, ctx: RunContext) -> ImageArrays | None:
        """The training split the detectors are fitted on, or None where the dataset has none here."""
        dataset = get_dataset(config.dataset)
        if dataset.splits and "train" not in dataset.splits:
            return None
        try:
            return config.load(ctx, "train", model_size=config.model.input_size()).subset(
                config.fit_subset, config.seed
            )
        except DataError:
            return None

    def _robustness(self, inputs: AuditInputs, *, memo) -> dict:
        config, test, batch = inputs.config, inputs.test, inputs.batch
        model, data = inputs.classifier.module, test.subset(config.attack_images, config.seed)
        linf, l2 = standard_eps(config, data.image_shape)
        rows, headline = [], None
        for eps in sorted({*config.epsilons, linf}):
            names = config.ensemble if eps == linf else config.sweep_ensemble or config.ensemble
            row, found = robustness_at(model, data, eps, self._ensemble(names, config, eps * PIXEL, "linf", len(test.classes)),
                                       pgd_steps=config.attack_steps, batch_size=batch, seed=config.seed, memo=memo)  # fmt: skip
            rows += [row] if eps in config.epsilons else []
            headline = (row, found) if eps == linf else headline
        robust = torch.zeros(len(data), dtype=torch.bool)
        robust[headline[0]["robust_images"]] = True
        record = {"images": len(data), "rows": rows,
                  "linf": {"eps_255": linf, **headline[0], "interval": self._interval(robust, config)}}  # fmt: skip
        if l2:
            found = run_ensemble(model, data, self._ensemble(config.ensemble, config, l2, "l2", len(test.classes)), batch_size=batch,
                                 seed=config.seed + 1, memo=memo)  # fmt: skip
            record["l2"] = {"eps": l2, "ensemble": found.record(), "interval": self._interval(found.robust, config),
                            "robust_images": found.robust.nonzero().flatten().tolist()}  # fmt: skip
        first = ATTACKS[next(name for name in config.ensemble if ATTACKS[name].uses_gradient)]
        checks = trust_checks(
            model, data, headline[1], [(r["eps_255"], r["robust_accuracy_all"]) for r in rows],
            stronger=first(eps=linf * PIXEL, steps=2 * config.ensemble_steps, restarts=2),
            large=first(eps=config.large_eps * PIXEL, steps=config.ensemble_steps), batch_size=batch, memo=memo,
        )  # fmt: skip
        return record | {"trust": [check.record() for check in checks]}

    @staticmethod
    def _interval(per_image: torch.Tensor, config: AuditConfig) -> dict[str, float | int]:
        """The 95% bootstrap interval of a mean over images (robust or corrupted accuracy: 0/1 or fractions)."""
        generator = torch.Generator().manual_seed(config.seed)
        return bootstrap_ci(batched_accuracy, per_image, resamples=config.resamples, generator=generator).to_record()

    def _ensemble(self, names, config: AuditConfig, eps: float, threat: str, classes: int) -> list[Attack]:
        """The attacks ``names`` that work in ``threat`` and on ``classes`` classes, at ``eps``, with the profile's
        budget."""
        return [make_attack(name, eps=eps, threat=threat, steps=config.ensemble_steps if ATTACKS[name].uses_gradient
                            else config.square_queries) for name in names
                if threat in ATTACKS[name].threats and classes >= ATTACKS[name].min_classes]  # fmt: skip

    # --- figures and report ---------------------------------------------------------------------------

    def _cam_grid(
        self, config: AuditConfig, classifier, test: ImageArrays, explanations: dict, ctx, batch: int
    ) -> dict:
        """Maps of the first method on correctly and wrongly classified images (recomputed: a cached section
        keeps numbers, not maps)."""
        model, layer = classifier.module, explanations["layer"]
        pool = test.subset(config.faithfulness_images, config.seed)
        x = pool.images.to(ctx.device).float() / 255
        with torch.no_grad():
            confidence, prediction = torch.cat([model(c).softmax(1) for c in x.split(batch)]).max(1)
        right = (prediction.cpu() == pool.labels).nonzero().flatten()[: config.grid_images]
        wrong = (prediction.cpu() != pool.labels).nonzero().flatten()[: config.grid_images]
        chosen = torch.cat([right, wrong])
        if len(chosen) == 0:
            return {}
        maps = compute_cam(config.cam_methods[0], model, x[chosen], layer, targets=prediction[chosen])
        classes = test.classes
        titles = [f"{'✓' if i in right else '✗'} true: {classes[pool.labels[i]]}\npred: {classes[prediction[i]]} "
                  f"({confidence[i]:.2f})" for i in chosen.tolist()]  # fmt: skip
        grid = figures.cam_grid(x[chosen].permute(0, 2, 3, 1).cpu().numpy(), maps.cpu().numpy(), titles,
                                method=config.cam_methods[0])  # fmt: skip
        return {"cam_grid.png": grid}

    def _figures(self, config: AuditConfig, results: dict[str, Any]) -> dict[str, Any]:
        accuracy, ood, robust = results["accuracy"], results["ood"], results["robustness"]
        cal, title = accuracy["calibration"], f"{results['model']['title']} on {results['data']['title']}"
        classes = results["data"]["classes"]
        found = {
            "confusion.png": figures.confusion(np.array(accuracy["confusion"]), classes, accuracy["per_class"],
                                               title=f"{title}: confusion matrix and accuracy per class"),
            "reliability.png": figures.reliability_diagram(
                {"as trained": _curve(cal["bins_before"]), f"temperature {cal['temperature']:.2f}": _curve(cal["bins_after"])},
                title=f"Reliability on {cal['measured_on']} held-out images"),
        }  # fmt: skip
        curves = accuracy["risk_coverage"]
        found["risk_coverage.png"] = figures.line_panels(
            {"error rate among the images kept": {
                "as trained": (curves["before"]["coverage"], curves["before"]["risk"]),
                f"temperature {cal['temperature']:.2f}": (curves["after"]["coverage"], curves["after"]["risk"])}},
            xlabel="coverage (fraction of images kept, most confident first)",
            title=f"Risk–coverage on {cal['measured_on']} held-out images",
        )  # fmt: skip
        if ood["metrics"]:
            bars = {"AUROC": {s: {DETECTORS[r["detector"]].name: r["auroc"] for r in ood["metrics"]
                                  if r["ood_set"] == s} for s in ood["sets"]}}  # fmt: skip
            found["ood.png"] = figures.grouped_bars(bars, xlabel="OOD set", ylims={"AUROC": (0, 1.1)},
                                                    width=max(6.0, 3.0 * len(ood["sets"])),
                                                    title=f"{title}: OOD detection (AUROC, higher is better)")  # fmt: skip
        shift = results["corruptions"]
        if shift["corruptions"]:
            found["corruptions.png"] = figures.heatmap(
                [[shift["clean_accuracy"], *shift["accuracy"][n]] for n in shift["corruptions"]], shift["corruptions"],
                ["clean", *map(str, shift["severities"])], xlabel="severity", label="accuracy",
                title=f"{title}: accuracy (%) under each corruption, {shift['images']} images")  # fmt: skip
        eps, rows = [r["eps_255"] for r in robust["rows"]], robust["rows"]
        accuracy_lines = {"clean": (eps, [r["clean_accuracy"] for r in rows]),
                          f"PGD-{config.attack_steps}": (eps, [r["robust_accuracy"] for r in rows]),
                          "robust (PGD and the ensemble)": (eps, [r["robust_accuracy_all"] for r in rows])}  # fmt: skip
        found["robustness.png"] = figures.line_panels(
            {"accuracy": accuracy_lines, "correctly classified images fooled": {"": (eps, [r["fooled"] for r in rows])}},
            xlabel="ε (grey levels, /255)", xticks=eps, xticklabels=[f"{e:g}" for e in eps], log2_x=min(eps) > 0,
            ylims={"accuracy": (0, 1.02), "correctly classified images fooled": (0, 1.02)},
            title=f"{title}: robustness to L∞ attacks",
        )  # fmt: skip
        steps = list(range(config.attack_steps + 1))
        found["effort.png"] = figures.line_panels(
            {"correctly classified images fooled within k steps": {f"ε = {r['eps_255']:g}/255": (steps, r["cumulative_success"])
                                                                  for r in rows if r["cumulative_success"]}},
            xlabel="PGD steps", ylims={"correctly classified images fooled within k steps": (0, 1.02)},
            title=f"Attack effort per image (PGD-{config.attack_steps}, early stop)",
        )  # fmt: skip
        return found

    def title(self, config: AuditConfig, results: dict[str, Any]) -> str:
        return f"Audit of {results['model']['title']} on {results['data']['title']}"

    def table(self, config: AuditConfig, results: dict[str, Any]) -> str:
        return table(["section", "quantity", "value", "what it means"],
                     [[s, q, v, m] for s, q, v, m in results["summary"]])  # fmt: skip

    def body(self, config: AuditConfig, results: dict[str, Any]) -> list:
        data, model, accuracy = results["data"], results["model"], results["accuracy"]
        cal, expl, ood, robust = accuracy["calibration"], results["explanations"], results["ood"], results["robustness"]
        restricted = ("" if model["restricted_to"] is None else
                      f" Its outputs for the dataset's {len(data['classes'])} classes are audited (outputs "
                      f"{', '.join(map(str, model['restricted_to']))}), as a classifier of those classes.")  # fmt: skip
        worst = sorted(zip(accuracy["per_class"], data["classes"], strict=True))[:3]
        method_rows = [[r["method"], r["images"], format_number(r["average_drop"]),
                        format_number(r["increase_in_confidence"]), format_number(r["deletion_auc"]),
                        format_number(r["insertion_auc"])] for r in expl["methods"]]  # fmt: skip
        sets = ", ".join(
            f"{name} ({info['size']} images, {info['distance']}-OOD)" for name, info in ood["sets"].items()
        )
        return [
            f"{model['title']}"
            + (f" ({model['reference']})" if model["reference"] else "")
            + f" on {data['test_size']} "
            f"{data['title']} test images ({data['test']}).{restricted}",
            Heading("Summary"),
            self.table(config, results),
            Heading("Accuracy"),
            f"Top-1 accuracy {with_interval(accuracy['top1'], accuracy['intervals']['top1'])}"
            + (f", top-5 {percent(accuracy['top5'])}%" if accuracy["top5"] is not None else "")
            + ". The weakest classes: "
            + ", ".join(f"{c} ({percent(a)}%)" for a, c in worst)
            + f". Intervals are 95% percentile bootstrap intervals over the test images ({config.resamples} "
            "resamples).",
            Image("confusion.png", "confusion matrix"),
            Heading("Calibration"),
            f"Expected calibration error: the test images are put in {config.calibration_bins} equal-width bins of "
            "confidence (the largest softmax probability), and ECE is the average over bins, weighted by their "
            "size, of |accuracy − mean confidence|; adaptive ECE uses bins of equal size instead (Nixon et al. 2019), "
            "classwise ECE averages over classes the ECE of each class's probability (Kull et al. 2019). "
            "Temperature scaling divides the logits by the one T that "
            f"minimises the NLL on {cal['fitted_on']} held-out test images; before and after are measured on the "
            f"other {cal['measured_on']}. It changes confidences, never predictions.",
            table(
                ["", "ECE %", "adaptive ECE %", "classwise ECE %", "NLL", "Brier", "mean confidence %"],
                [
                    [
                        name,
                        interval if interval else percent(cal[f"ece{key}"]),
                        percent(cal[f"adaptive_ece{key}"]),
                        percent(cal[f"classwise_ece{key}"]),
                        f"{cal[f'nll{key}']:.3f}",
                        brier,
                        confidence,
                    ]
                    for name, key, interval, brier, confidence in (
                        (
                            "all test images",
                            "",
                            with_interval(cal["ece"], accuracy["intervals"]["ece"]),
                            f"{cal['brier']:.3f}",
                            percent(cal["mean_confidence"]),
                        ),
                        ("held-out half, as trained", "_before", "", "", ""),
                        (f"held-out half, T = {cal['temperature']:.2f}", "_after", "", "", ""),
                    )
                ],
            ),  # fmt: skip
            Image("reliability.png", "reliability diagram"),
            Heading("Selective prediction", 2),
            "If the model may abstain on the images it is least sure of, how accurate is it on the rest? The "
            "risk–coverage curve keeps images from the most confident down and plots the error rate among those "
            "kept; AURC is the area under it (Geifman et al. 2019; lower is better). Temperature scaling can reorder "
            "confidences slightly, so both are shown, on the held-out half.",
            table(
                ["", "AURC", "accuracy at 90% coverage %", "accuracy at 95% coverage %", "accuracy at 100% %"],
                [
                    [
                        name,
                        f"{cal[f'aurc{key}']:.4f}",
                        percent(cal[f"accuracy_at_90_coverage{key}"]),
                        percent(cal[f"accuracy_at_95_coverage{key}"]),
                        percent(1 - accuracy["risk_coverage"][side]["risk"][-1]),
                    ]
                    for name, key, side in (
                        ("as trained", "_before", "before"),
                        (f"T = {cal['temperature']:.2f}", "_after", "after"),
                    )
                ],
            ),  # fmt: skip
            Image("risk_coverage.png", "risk–coverage curves"),
            Heading("Explanations"),
            f"Maps at layer `{expl['layer']}` for the predicted class, on {expl['images']} test images "
            f"({percent(expl['accuracy_on_pool'])}% of them classified correctly). Faithfulness: average drop and "
            "increase in confidence when the image is masked by its map (torchcam's definitions), deletion / "
            f"insertion AUC over {config.deletion_steps} steps (RISE). Sanity check (Adebayo et al. 2018): the "
            f"{expl['sanity']['method']} maps of {expl['sanity']['images']} images against those of the same model "
            f"with a randomised classifier head have a mean Spearman rank correlation of {expl['sanity']['mean']:.2f} "
            f"(median {expl['sanity']['median']:.2f}); near 1 would mean the maps ignore what the head learned.",
            table(
                ["method", "images", "average drop ↓", "increase in confidence ↑", "deletion AUC ↓", "insertion AUC ↑"],
                method_rows,
            ),  # fmt: skip
            Image("cam_grid.png", "maps on correctly (✓) and wrongly (✗) classified images"),
            Heading("OOD detection"),
            f"{len(config.detectors)} detectors fitted on {ood['fit']['size']} "
            + (
                "test images held out from scoring (the dataset has no training split here)"
                if ood["fit"]["from_test"]
                else "training images"
            )
            + ", scoring "
            f"{ood['id_size']} test images against {sets or 'no set'}. AUROC in %, higher is better; in-distribution "
            "is the positive class.",
            "".join(
                f"\n- {DETECTORS[d].name} could not run on this model: {why}"
                for d, why in ood.get("skipped", {}).items()
            ),
            table(
                ["OOD set", "distance", "why"],
                [[n, i["distance"], i["why"]] for n, i in ood["sets"].items()]
                + [[c["set"], "left out", c["why"]] for c in ood.get("left_out", [])],
            ),  # fmt: skip
            *(
                [
                    detector_table(
                        ood["metrics"],
                        ood["summary"],
                        {n: i["distance"] for n, i in ood["sets"].items()},
                        "model",
                        "auroc",
                        [d for d in config.detectors if d not in ood.get("skipped", {})],
                    ),
                    beats_msp_lines(ood["summary"], {"model": model["title"]}),
                    "Beyond noise? Each detector's AUROC against MSP's on the same resampled images (the 95% interval "
                    "of the paired difference excludes 0, or not):",
                    against_msp_lines(ood["metrics"], "model"),
                    Image("ood.png", "OOD detection"),
                ]
                if ood["metrics"]
                else []
            ),  # fmt: skip
            Heading("Common corruptions"),
            *corruptions_text(config, results["corruptions"]),
            Heading("Robustness"),
            *robustness_text(config, robust),
            Image("robustness.png", "robustness"),
            Image("effort.png", "attack effort per image"),
        ]


def worst_corruption(shift: dict[str, Any]) -> str:
    name = min(shift["corruptions"], key=lambda n: np.mean(shift["accuracy"][n]))
    return f"{name.replace('_', ' ')} ({percent(float(np.mean(shift['accuracy'][name])))}% over its severities)"


def corruptions_text(config: AuditConfig, shift: dict[str, Any]) -> list:
    """The corruption section: accuracy per corruption and severity, calibration per severity, detectors."""
    left_out = "".join(f" {name.replace('_', ' ')} is left out: it {why}." for name, why in shift["skipped"].items())
    if not shift["corruptions"]:
        return [f"No corruption could run on these images.{left_out}"]
    severities = shift["severities"]
    rows = [[n.replace("_", " "), *(percent(a) for a in shift["accuracy"][n]), percent(float(np.mean(shift["accuracy"][n])))]
            for n in shift["corruptions"]]  # fmt: skip
    means = [float(np.mean([shift["accuracy"][n][i] for n in shift["corruptions"]])) for i in range(len(severities))]
    rows.append(["**mean**", *(percent(m) for m in means), f"**{percent(shift['mean_accuracy'])}**"])
    detectors = list(dict.fromkeys(f["detector"] for f in shift["detectors"]))
    auroc = {(f["detector"], f["severity"]): f["auroc"] for f in shift["detectors"]}
    by_severity = [[str(s), percent(m), percent(e), *(percent(auroc[d, s]) for d in detectors)]
                   for s, m, e in zip(severities, means, shift["ece_by_severity"], strict=True)]  # fmt: skip
    skipped = left_out + "".join(
        f" {DETECTORS[d].name} could not run: {why}." for d, why in shift["skipped_detectors"].items()
    )
    return [
        f"{shift['images']} test images under each of the {len(shift['corruptions'])} common corruptions of Hendrycks "
        f"& Dietterich 2019 at severities {', '.join(map(str, severities))}, generated here in torch with "
        "imagecorruptions' parameters (those of ImageNet-C, for any image size; harsher on 32-pixel images than "
        "CIFAR-10-C's), seeded. Mean corruption accuracy "
        f"{with_interval(shift['mean_accuracy'], shift['interval'])} against {percent(shift['clean_accuracy'])}% clean; "
        f"relative corruption error {percent(shift['relative_error'])} points (clean accuracy minus the mean; "
        "Hendrycks & Dietterich's relative mCE without AlexNet's normalisation).",
        Image("corruptions.png", "accuracy per corruption and severity"),
        table(["corruption", *map(str, severities), "mean"], rows),
        "Per severity: the mean accuracy over corruptions, the ECE of all corrupted images pooled (calibration under "
        f"shift; {percent(shift['clean_ece'])}% clean), and each detector's AUROC of the clean images against the "
        "same images corrupted, each by one corruption in turn (50%: the detector does not notice the shift; "
        f"higher: it flags corrupted images as out-of-distribution).{skipped}",
        table(["severity", "accuracy %", "ECE %", *(f"{DETECTORS[d].name} AUROC %" for d in detectors)], by_severity),
    ]


def robustness_text(config: AuditConfig, robust: dict[str, Any]) -> list:
    """The robustness section: the ensemble at the reported ε, the sweep beside PGD, and the sanity checks."""
    weaker = config.ensemble_steps < 100 or config.square_queries < 5000
    sweep = config.sweep_ensemble or config.ensemble
    linf = robust["linf"]
    eps = f"{linf['eps_255']:g}/255"
    stage_rows = [["L∞", eps, "clean", "", "", percent(linf["ensemble"]["clean_accuracy"])]]
    stage_rows += [["L∞", eps, s["attack"], s["attacked"], s["broke"], percent(s["robust_accuracy"])]
                   for s in linf["ensemble"]["stages"]]  # fmt: skip
    stage_rows += [["L∞", eps, f"PGD-{config.attack_steps} alone (beside the ensemble)", "", "",
                    percent(linf["robust_accuracy"])],
                   ["L∞", eps, "**robust**: survives PGD and the ensemble", "", "",
                    with_interval(linf["robust_accuracy_all"], linf.get("interval"))]]  # fmt: skip
    if "l2" in robust:
        l2 = robust["l2"]
        stage_rows += [["L2", f"{l2['eps']:g}", s["attack"], s["attacked"], s["broke"], percent(s["robust_accuracy"])]
                       for s in l2["ensemble"]["stages"]]  # fmt: skip
        stage_rows.append(["L2", f"{l2['eps']:g}", "**robust**: survives the ensemble", "", "",
                           with_interval(l2["ensemble"]["robust_accuracy"], l2.get("interval"))])  # fmt: skip
    sweep_rows = [[f"{r['eps_255']:g}/255", percent(r["clean_accuracy"]), percent(r["robust_accuracy"]),
                   percent(r["robust_accuracy_all"]), " / ".join(str(s["broke"]) for s in r["ensemble"]["stages"]),
                   format_number(r["mean_iterations"], 2), percent(r["fooled"])] for r in robust["rows"]]  # fmt: skip
    flagged = [c for c in robust["trust"] if c["flagged"]]
    return [
        f"The standard ensemble on {robust['images']} test images: {', then '.join(config.ensemble)}, each attack on "
        "the images that every attack before it left standing, so an image counts as robust only if it survives all "
        f"of them (Croce & Hein 2020). Gradient attacks take {config.ensemble_steps} iterations, score-based ones "
        f"{config.square_queries} queries"
        + (": fewer than the standard's 100 and 5,000, so the attacks are weaker and these robust accuracies may be too "
           "high (`--profile full` runs the standard budget)." if weaker else ", the standard budget (RobustBench's).")
        + " *Broke* counts the images each attack was the first to break.",
        table(["threat", "ε", "attack", "attacked", "broke", "robust %"], stage_rows),
        f"Over the ε sweep (L∞), {', then '.join(sweep)} beside PGD from a random start ({config.attack_steps} steps "
        f"of 2.5·ε/{config.attack_steps}, each image stopping once fooled); *robust* counts the images that survive "
        f"PGD and every attack{'' if sweep == config.ensemble else ' (the whole ensemble at the reported ε)'}.",
        table(["ε", "clean %", f"PGD-{config.attack_steps} %", "robust %",
               "broke (each attack)", "mean PGD steps to fool", "correct images fooled %"],
              sweep_rows),  # fmt: skip
        Heading("Can this robust accuracy be believed?", 2),
        "The sanity checks of Carlini et al. 2019 (\"On evaluating adversarial robustness\"), at the reported L∞ ε: "
        + ("none is flagged." if not flagged else
           f"{len(flagged)} flagged; until they are explained, read the robust accuracy as an upper bound."),
        table(["check", "", "evidence"],
              [[c["check"], "⚠ flagged" if c["flagged"] else "passed", c["evidence"]] for c in robust["trust"]]),
    ]  # fmt: skip


def _curve(bins: dict[str, list]) -> tuple[list, list, list]:
    return bins["confidence"], bins["accuracy"], bins["count"]


@dataclass(frozen=True)
class ChosenSets:
    """The audit's OOD sets: label -> (why it was chosen, its images), and the sets left out, with why."""

    sets: dict[str, tuple[OodChoice, ImageArrays]]
    left_out: list[OodChoice]


@dataclass
class AuditInputs:
    """What the sections read: the model as a classifier of the dataset's classes and the images, with the
    config whose counts they use."""

    config: AuditConfig  # its counts made for the images (``for_images``)
    classifier: Classifier
    outputs: tuple[int, ...] | None  # the model's outputs kept (None: all)
    test: ImageArrays
    batch: int  # images per forward pass
    device: torch.device
    ood: ChosenSets | None = None  # where the OOD section is to be computed
    fitting: tuple[ImageArrays, ImageArrays] | None = None  # the ID images detectors score, and are fitted on

    @property
    def identity(self) -> dict[str, Any]:
        """What every record's cache key holds: the model, the images, the seed."""
        return {"model": self.classifier.describe(), "data": self.test.source, "n": len(self.test),
                "seed": self.config.seed}  # fmt: skip

    def settings(self, section: str) -> dict[str, Any]:
        return {**self.identity, "section": section, "config": _section_settings(self.config, section)}

    def key(self, section: str) -> str:
        return cache_key(section, self.settings(section))

    def on_cpu(self) -> AuditInputs:
        """These inputs with the model on the CPU (a copy, where it is elsewhere), for a machine whose devices
        are not this one's."""
        if model_device(self.classifier.module).type == "cpu":
            return self
        module = copy.deepcopy(self.classifier.module).cpu()
        return replace(self, classifier=replace(self.classifier, module=module))


def _section_task(name: str, inputs: AuditInputs, known: dict[str, Any], *, relay: TaskRelay) -> dict[str, Any]:
    """A section in a Ray task: its model moved to the device it runs on there, each attack it finishes relayed
    to the driver's cache as it finishes."""
    bar = relay.progress.add_task(name, total=None)
    inputs = replace(inputs, classifier=inputs.classifier.to(inputs.device))
    record = STUDIES["audit"].section(name, inputs, RelayedCache(known, relay.record))
    relay.progress.remove_task(bar)
    return record


def _section_settings(config: AuditConfig, section: str) -> dict[str, Any]:
    """The settings a section depends on (its cache key changes with them, and only with them)."""
    keys = {
        "accuracy": ("calibration_bins", "resamples"),
        "explanations": ("cam_methods", "layer", "faithfulness_images", "deletion_images", "deletion_steps",
                         "scorecam_images", "sanity_images"),
        "ood": ("ood_sets", "resize_ood", "detectors", "id_subset", "ood_subset", "fit_subset", "resamples"),
        "corruptions": ("corruptions", "severities", "corruption_images", "detectors", "fit_subset", "id_subset",
                        "calibration_bins", "resamples"),
        "robustness": ("epsilons", "eps", "l2_eps", "attack_steps", "ensemble", "sweep_ensemble", "ensemble_steps",
                       "square_queries",
                       "large_eps", "attack_images", "batch_size", "resamples"),
    }[section]  # fmt: skip
    settings = to_dict(config)
    return {key: settings[key] for key in keys}


def verdicts(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The summary: (section, quantity, value, what it means for this model)."""
    accuracy, cal = results["accuracy"], results["accuracy"]["calibration"]
    expl, ood, robust = results["explanations"], results["ood"], results["robustness"]
    over = cal["mean_confidence"] - accuracy["top1"]
    calibrated = ("well calibrated" if cal["ece"] < 0.02 else
                  f"{'over' if over > 0 else 'under'}confident: confidence {abs(100 * over):.1f} points "
                  f"{'above' if over > 0 else 'below'} accuracy")  # fmt: skip
    rows = [
        ("accuracy", "top-1 accuracy", with_interval(accuracy["top1"], accuracy["intervals"]["top1"]),
         f"{accuracy['images']} test images; the weakest class at {percent(np.nanmin(accuracy['per_class']))}%"),
        ("calibration", "ECE (15 bins)" if len(cal["bins_before"]["count"]) == 15 else "ECE",
         with_interval(cal["ece"], accuracy["intervals"]["ece"]),
         f"{calibrated}; temperature {cal['temperature']:.2f} takes held-out ECE from {percent(cal['ece_before'])}% "
         f"to {percent(cal['ece_after'])}%"),
        ("explanations", f"{expl['sanity']['method']} vs randomised head (rank corr.)", f"{expl['sanity']['mean']:.2f}",
         "the maps depend on the trained head (sanity check passed)" if expl["sanity"]["mean"] < 0.5 else
         "the maps change little when the head is randomised: do not read much into them"),
    ]  # fmt: skip
    best = min(expl["methods"], key=lambda r: r["average_drop"])
    rows.append(("explanations", f"average drop, {best['method']}", format_number(best["average_drop"]),
                 f"masking an image by its map keeps {100 * (1 - best['average_drop']):.0f}% of the class's "
                 "probability on average"))  # fmt: skip
    if ood["summary"]:
        means = {r["detector"]: np.nanmean([m["auroc"] for m in ood["metrics"] if m["detector"] == r["detector"]])
                 for r in ood["summary"]}  # fmt: skip
        top = max(means, key=means.get)
        msp = means.get("msp")
        gains = [
            m["auroc_minus_msp_ci"] for m in ood["metrics"] if m["detector"] == top and m.get("auroc_minus_msp_ci")
        ]
        beyond = sum(low > 0 for low, _ in gains)
        versus = "" if not gains else (f"; better than MSP beyond noise on {beyond} of {len(gains)} set(s)" if beyond
                                       else "; its lead over MSP is within noise on every set")  # fmt: skip
        rows.append(("OOD detection", f"mean AUROC, {DETECTORS[top].name}", f"{percent(means[top])}%",
                     f"the best of {len(means)} detectors over {len(ood['sets'])} set(s)"
                     + (f"; MSP {percent(msp)}%" if msp is not None else "") + versus
                     + ("; weak: many OOD images would pass as in-distribution" if means[top] < 0.8 else "")))  # fmt: skip
    shift = results["corruptions"]
    if not shift["corruptions"]:
        rows.append(("corruptions", "mean accuracy under the common corruptions", "—",
                     "none could corrupt these images: " + "; ".join(shift["skipped"].values())))  # fmt: skip
    else:
        kept = shift["mean_accuracy"] / max(shift["clean_accuracy"], 1e-12)
        rows.append(("corruptions", f"mean accuracy under {len(shift['corruptions'])} corruptions × "
                     f"{len(shift['severities'])} severities", with_interval(shift["mean_accuracy"], shift["interval"]),
                     f"keeps {100 * kept:.0f}% of its clean accuracy ({percent(shift['clean_accuracy'])}%); worst: "
                     + worst_corruption(shift)))  # fmt: skip
    headline = robust["linf"]
    half = half_fooled(robust["rows"])
    where = ("no ε of the sweep fools half of the correct images" if half["relation"] == ">"
             else f"half of the correctly classified images are fooled at ε {half['relation']} {half['eps']:.2g}/255")  # fmt: skip
    rows.append(("robustness", f"robust accuracy at ε = {headline['eps_255']:g}/255 (L∞)",
                 with_interval(headline["robust_accuracy_all"], headline.get("interval")),
                 f"PGD and the ensemble ({', '.join(s['attack'] for s in headline['ensemble']['stages'])}); {where}; "
                 f"{'not robust' if headline['robust_accuracy_all'] < 0.1 else 'some robustness'} "
                 f"(clean {percent(headline['clean_accuracy'])}%)"))  # fmt: skip
    flagged = [c["check"] for c in robust["trust"] if c["flagged"]]
    rows.append(("robustness", "sanity checks flagged", f"{len(flagged)} of {len(robust['trust'])}",
                 "do not trust the robust accuracy: " + "; ".join(flagged) if flagged else
                 "no sign that the attacks were fooled (gradient masking, no convergence)"))  # fmt: skip
    return rows


def audit(
    model: str | ModelSpec,
    data: str,
    *,
    ood: tuple[str, ...] = (),
    profile: str = "quick",
    settings: list[str] | None = None,
    ctx: RunContext | None = None,
) -> dict[str, Any]:
    """Audit ``model`` (a model name or path, or a :class:`ModelSpec`) on the dataset ``data`` with the ``profile``'s
    settings and ``settings`` (``key=value``); write the report where ``ctx`` says (default: ``runs/audit`` on the
    best device) and return the results (what ``results.json`` holds)."""
    overrides = [*(f"model.{k}={v}" for k, v in _spec_settings(model) if k != "name"), *audit_overrides(ood, settings)]
    config = STUDIES["audit"].config(
        profile, [f"dataset={data}", f"model.name={_spec_settings(model)[0][1]}", *overrides]
    )
    return run_audit_study(STUDIES["audit"], config, [config.model.name], data, profile, overrides, ctx)


def audit_overrides(ood: tuple[str, ...], settings: list[str] | None) -> list[str]:
    """The ``--set`` items of an audit beside its model and data."""
    return [*([f"ood_sets={','.join(ood)}"] if ood else []), *(settings or [])]


def run_audit_study(
    study: Study, config: Any, models: list[str], data: str, profile: str, overrides: list[str], ctx: RunContext | None
) -> dict[str, Any]:
    """Run an audit (or a comparison of audits) into ``ctx.out`` (default: ``runs/audit`` on the best device),
    its report naming the command that reruns it."""
    ctx = ctx or RunContext(out=Path("runs/audit"), device=resolve_device("auto"))
    command = "dlapps " + shlex.join(["audit", *(f"--model={name}" for name in models), "--data", data, "--profile",
                                      profile, "--out", str(ctx.out), *(f"--set={item}" for item in overrides)])  # fmt: skip
    return run_study(study, config, replace(ctx, command=command))


def _spec_settings(model: str | ModelSpec) -> list[tuple[str, str]]:
    if isinstance(model, str):
        return [("name", model)]
    given = {k: v for k, v in to_dict(model).items() if k in ("name", "weights", "mean", "std", "class_map") and v}
    return [(k, ",".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in given.items()]
