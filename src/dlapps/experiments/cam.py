"""Study ``cam``: what do the networks look at, and how faithful are the maps?

A classifier is explained on its dataset's images (by default the ImageNet MobileNetV2 on the Imagenette
validation images) with CAM, Grad-CAM, Grad-CAM++, Score-CAM and LayerCAM, and, for the course setup, the
deepest residual CNN of the ResNet runs it names (:data:`dlapps.train.writeup.RESNET_RUNS`, as ``residual-cnn``
trains them: taken from the shared model folder, trained if missing) on its test images. For each model the
study draws a grid like the course write-up's (image, heatmap, overlay; true and predicted class with
confidence), a method comparison, and a faithfulness table (average drop, increase in confidence,
deletion/insertion AUC).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import torch

from dlapps.config import PositiveInt, require
from dlapps.data import DATASET, ImageArrays, get_dataset, resolve_data_root
from dlapps.data.arrays import one_per_class
from dlapps.data.downloads import Need
from dlapps.errors import ConfigError
from dlapps.evaluate import predict
from dlapps.experiments.base import STUDIES, OnDataset, RunContext, Study, StudyOutput
from dlapps.explain import CAM_METHODS, batched_maps, faithfulness
from dlapps.models import PRETRAINED, Classifier
from dlapps.models.classifier import MODEL, align_labels
from dlapps.models.layout import inference_batch
from dlapps.models.spec import with_stand_in
from dlapps.report import figures
from dlapps.report.comparison import Comparison
from dlapps.report.markdown import Heading, Image, format_number, table
from dlapps.train import ClassifierRecipe
from dlapps.train.model_spec import ModelSpec
from dlapps.train.writeup import resnet_runs

# torchcam's published faithfulness on Imagenette with the ImageNet ResNet-18 (average drop, increase).
TORCHCAM_RESNET18 = {"gradcam": (0.2686, 0.2250), "gradcam++": (0.5271, 0.1962), "layercam": (0.1712, 0.2819)}


@dataclass(frozen=True)
class CamConfig(OnDataset):
    dataset: Annotated[str, DATASET] = "imagenette"
    image_size: PositiveInt | None = None  # None: the model's input size, for datasets whose images vary in size
    model: ModelSpec = field(default_factory=lambda: ModelSpec("mobilenet_v2_imagenet"))
    # runs instead when the model is published but its weights are not in the data root and have no public address
    stand_in: Annotated[str, MODEL] | None = "resnet18_imagenet"
    layer: str | None = None  # None: the model's known CAM layer, else its last spatial feature map
    # also explain the deepest residual net of these ResNet runs (the write-up's own CIFAR net in its profile), as
    # residual-cnn's profile of that name trains it; none: not, so that a model explained on its data trains nothing
    residual_cnn: str | None = None
    residual_cnn_set: tuple[str, ...] = ()  # ... with these overrides of the runs (key=value, no lists)
    methods: tuple[Annotated[str, CAM_METHODS], ...] = ("cam", "gradcam", "gradcam++", "scorecam", "layercam")
    grid_images: PositiveInt = 10
    faithfulness_images: PositiveInt = 1000  # average drop / increase in confidence
    deletion_images: PositiveInt = 200  # deletion / insertion AUC (17 forward passes per image and curve)
    deletion_steps: PositiveInt = 16
    scorecam_images: PositiveInt = 50  # Score-CAM needs one forward pass per channel of the layer
    batch_size: PositiveInt | None = None  # images per forward pass (None: as many as run fastest on the device)
    seed: int = 0

    def validate(self) -> None:
        require(len(self.methods) > 0, "methods must not be empty")
        require(self.stand_in is None or self.stand_in in PRETRAINED,
                f"stand_in must be a published model ({', '.join(PRETRAINED)}) or none, got {self.stand_in!r}")  # fmt: skip
        require(self.residual_cnn is not None or not self.residual_cnn_set,
                "residual_cnn_set changes the residual net that residual_cnn names: set residual_cnn too")  # fmt: skip
        self.residual_net()  # the residual net to explain must be valid

    def residual_net(self) -> ClassifierRecipe | None:
        """The recipe of the residual net to explain beside the model (None: none)."""
        return None if self.residual_cnn is None else resnet_runs(self.residual_cnn, self.residual_cnn_set).deepest()


def explain_model(classifier: Classifier, data: ImageArrays, layer: str, config: CamConfig, device) -> dict[str, Any]:
    """Grid maps and faithfulness of every method for one classifier on ``data`` (labels: its outputs)."""
    model, images, labels = classifier.module, data.images.to(device).float() / 255, data.labels
    batch = config.batch_size or inference_batch(data.image_shape, device)
    confidence, prediction = predict(model, data, batch).softmax(1).max(1)
    prediction = prediction.to(device)
    grid = one_per_class(labels.cpu(), config.grid_images)
    titles = [f"true: {data.classes[labels[i]]}\npred: {data.classes[prediction[i]]} ({confidence[i]:.2f})"
              for i in grid.tolist()]  # fmt: skip
    grid_maps, rows, skipped = {}, [], {}
    for method in config.methods:
        started = time.perf_counter()
        limit = min(len(images), config.scorecam_images if method == "scorecam" else config.faithfulness_images)
        try:
            grid_maps[method] = batched_maps(method, model, images[grid], layer, prediction[grid], batch)
        except ConfigError as exc:  # a method that does not apply to this model (plain CAM on a transformer)
            skipped[method] = str(exc)
            continue
        row = faithfulness(method, model, images[:limit], layer, prediction[:limit], batch_size=batch,
                           deletion_images=config.deletion_images, deletion_steps=config.deletion_steps)  # fmt: skip
        rows.append({"model": classifier.title, **row, "seconds": time.perf_counter() - started})
    if not rows:
        raise ConfigError(f"no CAM method applies to {classifier.title}: " + "; ".join(skipped.values()))
    return {
        "summary": {"model": classifier.title, "layer": layer, "dataset": data.source, "images": len(images),
                    "accuracy": float((prediction.cpu() == labels.cpu()).float().mean()), "skipped": skipped,
                    **classifier.describe()},
        "rows": rows,
        "grid_images": images[grid].permute(0, 2, 3, 1).cpu().numpy(),
        "grid_maps": {m: v.cpu().numpy() for m, v in grid_maps.items()},
        "titles": titles,
    }  # fmt: skip


@STUDIES.register("cam")
class Cam(Study):
    summary = "CAM, Grad-CAM, Grad-CAM++, Score-CAM, LayerCAM on a classifier (ImageNet MobileNetV2 by default); faithfulness."
    config_type = CamConfig
    exercise = (1, "2.3", "class activation maps")
    reads_training_split = False
    profiles = {
        "quick": {
            # Score-CAM needs one forward pass per channel (1,280 on MobileNetV2): ten minutes of a 2-core CPU
            # for the grid alone, so the quick profile leaves it to the full one.
            "methods": ("cam", "gradcam", "gradcam++", "layercam"),
            "faithfulness_images": 50,
            "deletion_images": 10,
            "deletion_steps": 8,
        },
        "full": {},
        # The write-up's: the ImageNet ResNet-18 on Imagenette and its own residual CNN (residual-cnn's writeup
        # ResNet-20) on CIFAR-10; its maps are CAMs, the other methods come beside them.
        "writeup": {
            "model": "resnet18_imagenet",
            "stand_in": "mobilenet_v2_imagenet",
            "methods": ("cam", "gradcam", "gradcam++", "layercam"),
            "residual_cnn": "writeup",
            "faithfulness_images": 100,
            "deletion_images": 20,
            "deletion_steps": 8,
        },
    }

    def needs(self, config: CamConfig, root: Path, download: bool = False) -> list[Need]:
        config = replace(config, model=self.model(config, root, download)[0])
        found = super().needs(config, root, download)
        net = config.residual_net()
        return found + (net.needs(root) if net is not None else [])

    @staticmethod
    def model(config: CamConfig, root: Path, download: bool = False) -> tuple[ModelSpec, str | None]:
        """The model to explain, and why another stands in for it (None: none does)."""
        return with_stand_in(config.model, config.stand_in, root, download)

    def run(self, config: CamConfig, ctx: RunContext) -> StudyOutput:
        # Inputs that can be wrong (weights files, image folders) are read before any long computation.
        spec, stand_in = self.model(config, resolve_data_root(ctx.data_root), ctx.download)
        config = replace(config, model=spec)
        dataset = get_dataset(config.dataset)
        size = config.model.input_size()
        data = config.load(ctx, model_size=size, limit=config.faithfulness_images, seed=config.seed)
        explained = {}
        with ctx.progress() as progress:
            classifier = ctx.classifier(
                config.model, data, dataset=dataset, image_size=config.image_size, progress=progress
            )
            data = align_labels(classifier, dataset, data, config.model.class_map)
            layer = classifier.explained_layer(_example(data, ctx), config.layer)
            if config.residual_cnn is not None:
                explained["residual-cnn"] = self._residual_cnn(config, ctx, progress)
            explained["model"] = explain_model(classifier, data, layer, config, ctx.device)
        results = {
            "stand_in": stand_in,
            "models": {k: v["summary"] for k, v in explained.items()},
            "faithfulness": [row for item in explained.values() for row in item["rows"]],
        }
        found = {}
        for key, item in explained.items():
            main = "cam" if "cam" in item["grid_maps"] else next(iter(item["grid_maps"]))
            found[f"{key}_cam_grid.png"], found[f"{key}_methods.png"] = figures.cam_figures(
                item["grid_images"], item["grid_maps"], item["titles"], main=main
            )
        return StudyOutput(results, results["faithfulness"], found)

    def _residual_cnn(self, config: CamConfig, ctx: RunContext, progress) -> dict[str, Any]:
        """The deepest residual net of the configured ResNet runs, explained on its test images."""
        recipe = config.residual_net()
        dataset = get_dataset(recipe.dataset)
        data = dataset.load(dataset.eval_split, ctx.data_root, ctx.download, size=recipe.image_size,
                            limit=config.faithfulness_images, seed=config.seed)  # fmt: skip
        classifier = ctx.classifier(recipe, progress=progress)
        classifier = replace(classifier, title=f"{classifier.title} (residual-cnn {config.residual_cnn})")
        return explain_model(classifier, data, classifier.explained_layer(_example(data, ctx)), config, ctx.device)

    def title(self, config: CamConfig, results: dict[str, Any]) -> str:
        return f"Class activation maps: {results['models']['model']['model']}"

    def table(self, config: CamConfig, results: dict[str, Any]) -> str:
        headers = ["model", "method", "images", "average drop ↓", "increase in confidence ↑", "deletion AUC ↓",
                   "insertion AUC ↑", "seconds"]  # fmt: skip
        rows = [
            [r["model"], r["method"], r["images"], format_number(r["average_drop"], 4),
             format_number(r["increase_in_confidence"], 4), format_number(r["deletion_auc"], 4),
             format_number(r["insertion_auc"], 4), f"{r['seconds']:.0f}"]
            for r in results["faithfulness"]
        ]  # fmt: skip
        return table(headers, rows)

    def body(self, config: CamConfig, results: dict[str, Any]) -> list:
        blocks: list = [
            "Each map is computed for the class the model predicts, at the layer named below (a convnet's last "
            "convolutional feature maps, before global average pooling; a vision transformer's last block's first "
            "norm, its patch tokens laid out on the image's patch grid), upsampled to the image and normalised "
            "to [0, 1].",
            *([f"{results['stand_in']}."] if results.get("stand_in") else []),
            "\n".join(f"- {m['model']}: layer `{m['layer']}`, {100 * m['accuracy']:.1f}% correct on the {m['images']} "
                      f"images used ({m['dataset']})" for m in results["models"].values()),
            *[f"{m['model']}: {method} is left out ({why})." for m in results["models"].values()
              for method, why in m.get("skipped", {}).items()],
        ]  # fmt: skip
        for key, info in results["models"].items():
            blocks += [Heading(info["model"]), Image(f"{key}_cam_grid.png", f"{info['model']}: CAM grid"),
                       Image(f"{key}_methods.png", f"{info['model']}: methods")]  # fmt: skip
        scorecam = (f"Score-CAM is measured on {config.scorecam_images} images (one forward pass per channel)."
                    if "scorecam" in config.methods else
                    "Score-CAM is left out of this profile (one forward pass per channel; see the full profile).")  # fmt: skip
        return blocks + [
            Heading("Faithfulness"),
            "Average drop and increase in confidence as torchcam defines them (the image is masked by its map, "
            "blending towards the model's normalisation mean); deletion/insertion AUC as in RISE "
            f"({config.deletion_steps} steps; insertion starts from a blurred image). {scorecam}",
            self.table(config, results),
        ]

    def no_reference(self, config: CamConfig) -> str | None:
        imagenet = config.model.is_published and PRETRAINED[config.model.name].trained_on == "imagenet"
        if not config.is_dataset("imagenette") or not imagenet:
            return ("torchcam's faithfulness figures are for a published ImageNet CNN on Imagenette, and the "
                    f"write-up's maps are pictures only; this run explains {config.model.name} on "
                    f"{get_dataset(config.dataset).title}")  # fmt: skip
        return None

    def compare(self, config: CamConfig, results: dict[str, Any]) -> list[Comparison]:
        """Faithfulness of a published ImageNet CNN on Imagenette beside torchcam's ResNet-18 (the write-up's CAMs
        are pictures only)."""
        if self.no_reference(config):
            return []
        model = results["models"]["model"]["model"]
        rows = []
        for r in results["faithfulness"]:
            if r["model"] == model and r["method"] in TORCHCAM_RESNET18:
                drop, increase = TORCHCAM_RESNET18[r["method"]]
                source = f"torchcam, ResNet-18 on Imagenette; ours: {model}, {r['images']} images"
                rows += [
                    Comparison(f"{r['method']} average drop (lower is better)", ours=r["average_drop"],
                               literature=drop, source=source, digits=4),
                    Comparison(f"{r['method']} increase in confidence (higher is better)",
                               ours=r["increase_in_confidence"], literature=increase, source=source, digits=4),
                ]  # fmt: skip
        return rows


def _example(data: ImageArrays, ctx: RunContext) -> torch.Tensor:
    return data.images[:1].to(ctx.device).float() / 255
