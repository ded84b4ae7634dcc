"""Study ``cam``: what do the networks look at, and how faithful are the maps?

Two models are explained with CAM, Grad-CAM, Grad-CAM++, Score-CAM and LayerCAM: the deepest residual CIFAR
CNN trained by ``residual-cnn`` (taken from the shared model folder, trained if missing) on CIFAR-10 test
images, and a pretrained ImageNet CNN on the Imagenette validation images. For each model the study draws
a grid like the course write-up's (image, heatmap, overlay; true and predicted class with confidence), a
method comparison, and a faithfulness table (average drop, increase in confidence, deletion/insertion AUC).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2

from dlapps.config import require
from dlapps.data import image_folder, load_arrays
from dlapps.data.datasets import IMAGENETTE_TO_IMAGENET
from dlapps.experiments.base import RunContext, Study, environment_section, study_results
from dlapps.experiments.residual_cnn import STUDY as RESIDUAL_CNN
from dlapps.experiments.zoo import obtain_classifier
from dlapps.explain import CAM_METHODS, compute_cam, deletion_insertion, masked_confidence
from dlapps.models import PRETRAINED, imagenet_categories, load_pretrained
from dlapps.report import figures
from dlapps.report.comparison import Comparison, comparison_section
from dlapps.report.io import save_figure, staged_output, write_csv, write_json, write_text
from dlapps.report.markdown import format_number, table

# torchcam's published faithfulness on Imagenette with an ImageNet ResNet-18 (average drop, increase).
TORCHCAM_RESNET18 = {"gradcam": (0.2686, 0.2250), "gradcam++": (0.5271, 0.1962), "layercam": (0.1712, 0.2819)}


@dataclass(frozen=True)
class CamConfig:
    methods: tuple[str, ...] = ("cam", "gradcam", "gradcam++", "scorecam", "layercam")
    cifar_profile: str = "full"  # explain the deepest residual net of this residual-cnn profile ...
    cifar_set: tuple[str, ...] = ()  # ... with these residual-cnn overrides (key=value, no lists)
    imagenet_model: str = "mobilenet_v2_imagenet"  # or resnet18_imagenet (torchvision weights)
    imagenet_weights: str | None = None  # a weights file for imagenet_model instead of the named one
    grid_images: int = 10
    faithfulness_images: int = 1000  # average drop / increase in confidence
    deletion_images: int = 200  # deletion / insertion AUC (17 forward passes per image and curve)
    deletion_steps: int = 16
    scorecam_images: int = 50  # Score-CAM needs one forward pass per channel of the layer
    batch_size: int = 32
    seed: int = 0

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in CAM_METHODS]
        require(not unknown and self.methods, f"methods must be among {', '.join(CAM_METHODS)}, got {self.methods}")
        require(
            self.imagenet_model in PRETRAINED,
            f"unknown imagenet_model {self.imagenet_model!r}; known: {', '.join(PRETRAINED)}",
        )
        RESIDUAL_CNN.config(self.cifar_profile, list(self.cifar_set))  # the CIFAR model to explain must be valid
        for key in (
            "grid_images",
            "faithfulness_images",
            "deletion_images",
            "deletion_steps",
            "scorecam_images",
            "batch_size",
        ):
            require(getattr(self, key) > 0, f"{key} must be positive, got {getattr(self, key)}")


def _batched_maps(method: str, model: nn.Module, x: torch.Tensor, layer: str, classifier: str, targets, batch_size):
    chunks = zip(x.split(batch_size), targets.split(batch_size), strict=True)
    return torch.cat([compute_cam(method, model, xb, layer, classifier=classifier, targets=tb) for xb, tb in chunks])


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.cat([model(chunk).softmax(1) for chunk in x.split(batch_size)])
    confidence, prediction = probs.max(1)
    return prediction, confidence


def _one_per_class(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the first image of each class (in the given order), then more until ``count``."""
    firsts = [int((labels == c).nonzero()[0]) for c in labels.unique().tolist()]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return torch.tensor((firsts + rest)[:count])


def explain_model(
    name: str,
    model: nn.Module,
    images: torch.Tensor,
    true_output: torch.Tensor,
    categories: list[str],
    layer: str,
    classifier: str,
    config: CamConfig,
) -> dict[str, Any]:
    """Grid maps and faithfulness of every method for one model on its images ([0, 1]).

    ``true_output`` is the model's output index of each image's true class; ``categories`` names the outputs.
    """
    prediction, confidence = _predict(model, images, config.batch_size)
    grid = _one_per_class(true_output.cpu(), config.grid_images)
    titles = [
        f"true: {categories[true_output[i]]}\npred: {categories[prediction[i]]} ({confidence[i]:.2f})"
        for i in grid.tolist()
    ]
    grid_maps, rows = {}, []
    for method in config.methods:
        started = time.perf_counter()
        limit = min(len(images), config.scorecam_images if method == "scorecam" else config.faithfulness_images)
        x, targets = images[:limit], prediction[:limit]
        maps = _batched_maps(method, model, x, layer, classifier, targets, config.batch_size)
        grid_maps[method] = _batched_maps(
            method, model, images[grid], layer, classifier, prediction[grid], config.batch_size
        )
        conf = masked_confidence(model, x, maps, targets, batch_size=config.batch_size)
        n_del = min(limit, config.deletion_images)
        deletion, insertion = deletion_insertion(
            model, x[:n_del], maps[:n_del], targets[:n_del], steps=config.deletion_steps, batch_size=config.batch_size
        )
        rows.append({
            "model": name, "method": method, "images": limit, "average_drop": conf.average_drop,
            "increase_in_confidence": conf.increase_in_confidence, "deletion_images": n_del,
            "deletion_auc": float(deletion.mean()), "insertion_auc": float(insertion.mean()),
            "seconds": time.perf_counter() - started,
        })  # fmt: skip
    return {
        "model": name,
        "accuracy": float((prediction.cpu() == true_output.cpu()).float().mean()),
        "images": len(images),
        "rows": rows,
        "grid_images": images[grid].permute(0, 2, 3, 1).cpu().numpy(),
        "grid_maps": {m: v.cpu().numpy() for m, v in grid_maps.items()},
        "titles": titles,
    }


def _imagenette(config: CamConfig, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    transform = v2.Compose(
        [v2.PILToTensor(), v2.Resize(224), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True)]
    )
    dataset = image_folder("imagenette", "val", ctx.data_root, transform=transform)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(config.seed))
    subset = Subset(dataset, order[: config.faithfulness_images].tolist())
    images, labels = zip(*DataLoader(subset, batch_size=64), strict=True)
    return torch.cat(images).to(ctx.device), torch.cat(labels)


def run(config: CamConfig, ctx: RunContext) -> dict[str, Any]:
    started = time.perf_counter()
    # Inputs that can be wrong (weights files, image folders) are read before any long computation.
    spec = PRETRAINED[config.imagenet_model]
    imagenet_model = load_pretrained(config.imagenet_model, ctx.data_root, ctx.download, config.imagenet_weights)
    images, labels = _imagenette(config, ctx)
    cifar = load_arrays("cifar10", "test", ctx.data_root, ctx.download)
    cifar = cifar.subset(config.faithfulness_images, seed=config.seed).to(ctx.device)
    cnn_config = RESIDUAL_CNN.config(config.cifar_profile, list(config.cifar_set))
    recipe = cnn_config.recipe(max(cnn_config.blocks), skip=True, seed=0)
    explained = {}
    with ctx.progress() as progress:
        task = progress.add_task("cam: CIFAR model", total=2)
        cifar_model, _ = obtain_classifier(recipe, ctx, progress=progress)
        explained["cifar"] = explain_model(
            f"CIFAR ResNet-{6 * max(cnn_config.blocks) + 2} (residual-cnn {config.cifar_profile})",
            cifar_model, cifar.images.float() / 255, cifar.labels, list(cifar.classes), "layer3", "linear", config,
        )  # fmt: skip
        progress.update(task, advance=1, description=f"cam: {config.imagenet_model}")
        explained["imagenette"] = explain_model(
            f"{config.imagenet_model} (ImageNet)", imagenet_model.to(ctx.device), images,
            torch.tensor(IMAGENETTE_TO_IMAGENET)[labels], imagenet_categories(), spec.cam_layer, spec.classifier, config,
        )  # fmt: skip
        progress.advance(task)
    rows = explained["cifar"]["rows"] + explained["imagenette"]["rows"]
    results = study_results(
        "cam",
        config,
        ctx,
        started,
        faithfulness=rows,
        models={k: {f: v[f] for f in ("model", "accuracy", "images")} for k, v in explained.items()},
    )
    with staged_output(ctx.out) as stage:
        write_json(stage / "results.json", results)
        write_csv(stage / "faithfulness.csv", rows)
        main_method = "cam" if "cam" in config.methods else config.methods[0]
        for key, item in explained.items():
            save_figure(
                figures.cam_grid(
                    item["grid_images"], item["grid_maps"][main_method], item["titles"], method=main_method
                ),
                stage / f"{key}_cam_grid.png",
            )
            shown = slice(0, 6)
            save_figure(
                figures.cam_comparison(
                    item["grid_images"][shown],
                    {m: v[shown] for m, v in item["grid_maps"].items()},
                    item["titles"][shown],
                ),
                stage / f"{key}_methods.png",
            )
        write_text(stage / "report.md", _report(config, results))
    return results


def _report(config: CamConfig, results: dict[str, Any]) -> str:
    headers = ["model", "method", "images", "average drop ↓", "increase in confidence ↑", "deletion AUC ↓",
               "insertion AUC ↑", "seconds"]  # fmt: skip
    rows = [
        [r["model"], r["method"], r["images"], format_number(r["average_drop"], 4),
         format_number(r["increase_in_confidence"], 4), format_number(r["deletion_auc"], 4),
         format_number(r["insertion_auc"], 4), f"{r['seconds']:.0f}"]
        for r in results["faithfulness"]
    ]  # fmt: skip
    models = [
        f"- {m['model']}: {100 * m['accuracy']:.1f}% correct on the {m['images']} images used"
        for m in results["models"].values()
    ]
    return "\n".join(
        [
            "# Class activation maps",
            "",
            "Each map is computed for the class the model predicts, at the last convolutional feature maps "
            "(before global average pooling), upsampled to the image and normalised to [0, 1].",
            "",
            *models,
            "",
            "## CIFAR-10: the deepest residual CNN of `residual-cnn`",
            "",
            "![CIFAR CAM grid](cifar_cam_grid.png)",
            "",
            "![CIFAR methods](cifar_methods.png)",
            "",
            f"## Imagenette: {config.imagenet_model}",
            "",
            "![Imagenette CAM grid](imagenette_cam_grid.png)",
            "",
            "![Imagenette methods](imagenette_methods.png)",
            "",
            "## Faithfulness",
            "",
            "Average drop and increase in confidence as torchcam defines them (the image is masked by its map, "
            "blending towards the model's normalisation mean); deletion/insertion AUC as in RISE "
            f"({config.deletion_steps} steps; insertion starts from a blurred image). "
            + (
                f"Score-CAM is measured on {config.scorecam_images} images (one forward pass per channel)."
                if "scorecam" in config.methods
                else "Score-CAM is left out of this profile (one forward pass per channel; see the full profile)."
            ),
            "",
            table(headers, rows),
            *comparison_section(compare(config, results)),
            *environment_section(results),
        ]
    )


def compare(config: CamConfig, results: dict[str, Any]) -> list[Comparison]:
    """Our Imagenette faithfulness beside torchcam's ResNet-18 numbers (the write-up's CAMs are pictures only)."""
    imagenette = results["models"]["imagenette"]["model"]
    rows = []
    for r in results["faithfulness"]:
        if r["model"] == imagenette and r["method"] in TORCHCAM_RESNET18:
            drop, increase = TORCHCAM_RESNET18[r["method"]]
            source = f"torchcam, ResNet-18 on Imagenette; ours: {imagenette}, {r['images']} images"
            rows += [
                Comparison(f"{r['method']} average drop (lower is better)", ours=r["average_drop"],
                           literature=drop, source=source, digits=4),
                Comparison(f"{r['method']} increase in confidence (higher is better)",
                           ours=r["increase_in_confidence"], literature=increase, source=source, digits=4),
            ]  # fmt: skip
    return rows


STUDY = Study(
    name="cam",
    summary="CAM, Grad-CAM, Grad-CAM++, Score-CAM, LayerCAM on a CIFAR ResNet and an ImageNet CNN; faithfulness.",
    default_config=CamConfig,
    profiles={
        "quick": {
            # Score-CAM needs one forward pass per channel (1,280 on MobileNetV2): ten minutes of a 2-core CPU
            # for the grid alone, so the quick profile leaves it to the full one.
            "methods": ("cam", "gradcam", "gradcam++", "layercam"),
            "cifar_profile": "quick",
            "faithfulness_images": 100,
            "deletion_images": 20,
            "deletion_steps": 8,
        },
        "full": {},
    },
    run=run,
    compare=compare,
)
