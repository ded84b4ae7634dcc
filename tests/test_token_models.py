"""Tiny timm models trained here for a few epochs on a CIFAR-10 slice (a ViT with 4-pixel patches, a ConvNeXt
and a Swin), so that their maps and scores mean something: every analysis takes them as it takes a convnet of
dlapps's own, by name or by checkpoint."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

from dlapps.data import load_arrays
from dlapps.explain import compute_cam
from dlapps.explain.sanity import head_randomisation_check
from dlapps.models.classifier import checkpoint_card
from dlapps.models.hooks import find_head
from dlapps.ood.features import head_outputs
from dlapps.report.io import read_json
from dlapps.train import ClassifierRecipe, obtain_classifier
from dlapps.train.config import TrainConfig
from figures_check import assert_cam_grid_is_gradcam, kept_figures
from helpers import dlapps_main

timm = pytest.importorskip("timm")

TINY = {  # each about 0.1M parameters; 32-pixel images
    "vit": ("timm:vit_tiny_patch16_224", {"img_size": 32, "patch_size": 4, "depth": 2, "embed_dim": 64, "num_heads": 2}),
    "convnext": ("timm:convnext_atto", {"dims": (16, 32, 48, 64), "depths": (1, 1, 1, 1), "patch_size": 2}),
    "swin": ("timm:swin_tiny_patch4_window7_224",
             {"img_size": 32, "window_size": 4, "embed_dim": 32, "depths": (2, 2), "num_heads": (2, 4)}),
}  # fmt: skip
# ConvNeXt's last stage is 1x1 at 32 pixels: its maps are the last ones with extent, the third stage's output as
# the last stage's downsampling normalises it.
LAYERS = {"vit": "blocks.1.norm1", "convnext": "stages.3.downsample.0", "swin": "layers.1.blocks.1.norm1"}


def recipe(kind: str) -> ClassifierRecipe:
    name, settings = TINY[kind]
    return ClassifierRecipe(name, tuple(sorted(settings.items())), "cifar10", train=TrainConfig(epochs=5),
                            train_subset=5000, test_subset=500)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """The three models, trained into one folder (also the checkpoints the command-line tests audit)."""
    folder = tmp_path_factory.mktemp("models")
    splits = recipe("vit").load_data(data_root)
    return {kind: obtain_classifier(recipe(kind), folder, torch.device("cpu"), *splits)[0] for kind in TINY}


@pytest.fixture(scope="module")
def images(data_root):
    test = load_arrays("cifar10", "test", data_root, limit=700)
    return test.images[500:].float() / 255, test.labels[500:]  # images none of them was evaluated on in training


def test_they_learned_something(trained, images):
    x, labels = images
    for kind, classifier in trained.items():
        accuracy = (classifier.module(x).argmax(1) == labels).float().mean().item()
        assert accuracy > 0.2, kind  # chance is 0.10 (200 images)
        assert classifier.info["history"][-1]["test_acc"] > 0.2


def test_default_cam_layers_and_maps_on_the_image_grid(trained, images):
    x = images[0][:8]
    for kind, classifier in trained.items():
        layer = classifier.explained_layer(x[:1])
        assert layer == LAYERS[kind]
        maps = compute_cam("gradcam", classifier.module, x, layer)
        assert maps.shape == (8, 32, 32) and maps.min() >= 0 and maps.amax((1, 2)).min() > 0.99


def test_vit_gradcam_equals_pytorch_grad_cams_with_its_reshape_transform(trained, images):
    model, x = trained["vit"].module, images[0][:16]
    targets = model(x).argmax(1)
    ours = compute_cam("gradcam", model, x, "blocks.1.norm1", targets=targets)
    transform = lambda t: vit_reshape_transform(t, height=8, width=8)  # noqa: E731 - its documented example
    with GradCAM(model=model, target_layers=[model.blocks[-1].norm1], reshape_transform=transform) as reference:
        theirs = reference(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    assert np.abs(ours.numpy() - theirs).max() <= 1e-5


def test_maps_change_when_the_head_is_randomised(trained, images):
    """Adebayo et al.'s check passes: the maps follow what the trained head learned."""
    x = images[0][:12]
    for kind in ("vit", "swin"):
        model = trained[kind].module
        correlation = head_randomisation_check("gradcam", model, x, LAYERS[kind], model(x).argmax(1), seed=0)
        assert correlation.shape == (12,) and correlation.median() < 0.5, kind


def test_detectors_read_timms_pre_logit_features(trained, images):
    x = images[0][:8]
    for kind, classifier in trained.items():
        model = classifier.module
        head, linear = find_head(model)
        with torch.no_grad():
            outputs = head_outputs(model, x, head)
            expected = model.forward_head(model.forward_features(model.normalize(x)), pre_logits=True)
        assert torch.equal(outputs.features, expected.flatten(1)), kind
        assert torch.allclose(linear(outputs.features), outputs.logits, atol=1e-5)


TINY_AUDIT = ["test_subset=100", "faithfulness_images=8", "deletion_images=4", "deletion_steps=4", "sanity_images=4",
              "grid_images=3", "id_subset=100", "ood_subset=50", "fit_subset=200", "attack_images=20",
              "epsilons=2,8", "ensemble_steps=5", "square_queries=20", "detectors=msp,energy,mahalanobis,vim",
              "corruption_images=20", "corruptions=gaussian_noise,defocus_blur,jpeg_compression"]  # fmt: skip


@pytest.mark.slow  # an audit end to end
def test_a_vit_checkpoint_audited_with_every_section(trained, data_root, tmp_path):
    checkpoint = trained["vit"].info["checkpoint"]
    sets = [arg for pair in TINY_AUDIT for arg in ("--set", pair)]
    result = dlapps_main("audit", "--model", checkpoint, "--data", "cifar10", "--out", str(tmp_path), "--no-progress",
                         *sets, data_root=data_root, figures=tmp_path / "figures")  # fmt: skip
    assert result.returncode == 0, result.stderr
    results = read_json(tmp_path / "results.json")
    for section in ("accuracy", "explanations", "ood", "corruptions", "robustness"):
        assert section in results, section
    assert results["explanations"]["layer"] == "blocks.1.norm1"
    assert {r["detector"] for r in results["ood"]["metrics"]} == {"msp", "energy", "mahalanobis", "vim"}
    report = (tmp_path / "report.md").read_text()
    assert "`blocks.1.norm1`" in report and "vit_tiny_patch16_224" in report
    figure = kept_figures(tmp_path / "figures")["cam_grid.png"]
    transform = lambda t: vit_reshape_transform(t, height=8, width=8)  # noqa: E731
    assert_cam_grid_is_gradcam(figure, trained["vit"].module, "blocks.1.norm1", reshape_transform=transform)


FACTORY = """
from torch import nn

def build(num_classes, width=8):
    body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return nn.Sequential(body, nn.Linear(width, num_classes))
"""


@pytest.mark.slow  # four studies end to end
@pytest.mark.parametrize("study", ["cam", "ood", "fgsm", "targeted"])
def test_studies_take_a_timm_model_and_a_factory_model_by_name(trained, data_root, tmp_path, study):
    from safetensors.torch import save_file

    (tmp_path / "net.py").write_text(FACTORY)
    vit = trained["vit"]  # timm's ViT by name with the weights trained above, saved as a user would save them
    save_file({k: v.contiguous() for k, v in vit.module.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    name, settings = TINY["vit"]
    card = checkpoint_card(vit.info["checkpoint"])  # the normalisation it was trained with
    timm_model = [f"model={name}", f"model.weights={tmp_path / 'vit.safetensors'}",
                  f"model.mean={','.join(map(str, card['mean']))}", f"model.std={','.join(map(str, card['std']))}",
                  *(f"model.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in settings.items())]  # fmt: skip
    factory = [f"model={tmp_path / 'net.py'}:build", "model.width=4", "model.train.epochs=1",
               "model.train_subset=200"]  # trained here  # fmt: skip
    small = {"cam": ["dataset=cifar10", "methods=gradcam,layercam", "faithfulness_images=8", "deletion_images=4",
                     "deletion_steps=4", "grid_images=3"],
             "ood": ["detectors=msp,energy,mahalanobis", "id_subset=100", "ood_subset=50", "fit_subset=200",
                     "with_baseline=false", "ood_sets=cifar100"],
             "fgsm": ["test_subset=20", "epsilons=2,8"],
             "targeted": ["test_subset=10", "steps=3"]}[study]  # fmt: skip
    for model, title in ((timm_model, "timm:vit_tiny_patch16_224 (vit.safetensors)"), (factory, "build from net.py")):
        sets = [arg for pair in (*model, *small) for arg in ("--set", pair)]
        out = tmp_path / title.partition(" ")[0].replace(":", "-")
        result = dlapps_main("run", study, "--profile", "quick", "--out", str(out), "--no-progress", *sets,
                             data_root=data_root)  # fmt: skip
        assert result.returncode == 0, (title, result.stderr)
        assert title in (out / "report.md").read_text(), title
        assert read_json(out / "results.json")["config"]["model"]["name"] == model[0].removeprefix("model=")
