import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from dlapps.data import load_arrays
from dlapps.errors import ConfigError
from dlapps.explain import compute_cam, deletion_insertion, masked_confidence, normalize_maps
from dlapps.explain.faithfulness import Confidence
from dlapps.models import create_model, load_pretrained

CIFAR = {"num_classes": 10, "in_shape": (3, 32, 32)}


@pytest.fixture(scope="module")
def tiny_resnet():
    """A small CIFAR ResNet with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = create_model("cifar_resnet", **CIFAR, blocks=1, widths=(8, 16, 32), mean=(0.5,) * 3, std=(0.25,) * 3)
    with torch.no_grad():
        model.train()(torch.rand(64, 3, 32, 32))
    return model.eval()


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(1)
    return torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 5])


@pytest.mark.parametrize(
    ("method", "reference"),
    [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus), ("layercam", LayerCAM), ("scorecam", ScoreCAM)],
)
def test_agrees_with_pytorch_grad_cam(tiny_resnet, batch, method, reference):
    x, targets = batch if method != "scorecam" else (batch[0][:2], batch[1][:2])  # the reference is slow
    ours = compute_cam(method, tiny_resnet, x, "layer3", targets=targets)
    with reference(model=tiny_resnet, target_layers=[tiny_resnet.layer3]) as explainer:
        theirs = explainer(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    assert ours.shape == (len(x), 32, 32)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


def test_cam_is_the_class_weighted_sum_of_the_last_feature_maps(tiny_resnet, batch):
    x, targets = batch
    with torch.no_grad():
        features = tiny_resnet.features(x)
    weighted = torch.einsum("nk,nkhw->nhw", tiny_resnet.linear.weight[targets], features).clamp(min=0)
    expected = normalize_maps(F.interpolate(weighted[:, None], size=(32, 32), mode="bilinear").squeeze(1))
    ours = compute_cam("cam", tiny_resnet, x, "layer3", classifier="linear", targets=targets)
    assert torch.allclose(ours, expected, atol=1e-5)
    # For a GAP + linear head, Grad-CAM's weights are the class weights divided by h*w: the same map.
    assert torch.allclose(ours, compute_cam("gradcam", tiny_resnet, x, "layer3", targets=targets), atol=1e-5)


def test_default_targets_are_predictions_and_maps_are_normalised(tiny_resnet, batch):
    x, _ = batch
    predicted = tiny_resnet(x).argmax(1)
    for method in ("gradcam", "layercam"):
        maps = compute_cam(method, tiny_resnet, x, "layer3")
        assert torch.equal(maps, compute_cam(method, tiny_resnet, x, "layer3", targets=predicted))
        assert maps.min() >= 0 and torch.allclose(maps.flatten(1).max(1).values, torch.ones(6), atol=1e-5)


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_no_hooks_remain_and_mode_is_restored(tiny_resnet, batch):
    x, targets = batch
    tiny_resnet.train()
    try:
        for method in ("cam", "gradcam", "gradcam++", "scorecam", "layercam"):
            compute_cam(method, tiny_resnet, x, "layer3", classifier="linear", targets=targets)
            assert _hook_count(tiny_resnet) == 0 and tiny_resnet.training
        with pytest.raises(ValueError, match="targets must have shape"):
            compute_cam("gradcam", tiny_resnet, x, "layer3", targets=targets[:2])
        assert _hook_count(tiny_resnet) == 0 and tiny_resnet.training
    finally:
        tiny_resnet.eval()


def test_bad_layers_and_heads(tiny_resnet, batch):
    x, targets = batch
    with pytest.raises(ConfigError, match="has no layer 'layer9'; its last layers are: .*linear"):
        compute_cam("gradcam", tiny_resnet, x, "layer9")
    with pytest.raises(ConfigError, match="unknown CAM method 'gradcam3'"):
        compute_cam("gradcam3", tiny_resnet, x, "layer3")
    small = create_model("small_cnn", **CIFAR).eval()
    with pytest.raises(ConfigError, match="is a Sequential, not a linear layer; use Grad-CAM"):
        compute_cam("cam", small, x, "features", classifier="classifier")
    with pytest.raises(
        ConfigError, match="not 'classifier.3' applied to the global average of 'features.3'.*use Grad-CAM"
    ):
        compute_cam("cam", small, x, "features.3", classifier="classifier.3")
    with pytest.raises(ConfigError, match="must output .* feature maps"):
        compute_cam("gradcam", small, x, "classifier.1")
    assert compute_cam("gradcam", small, x, "features.4", targets=targets).shape == (6, 32, 32)  # any CNN


def test_confidence_metrics_on_hand_made_values():
    conf = Confidence(original=torch.tensor([0.8, 0.5, 0.4, 0.9]), masked=torch.tensor([0.4, 0.6, 0.4, 0.0]))
    assert conf.average_drop == pytest.approx((0.5 + 0 + 0 + 1) / 4)
    assert conf.increase_in_confidence == pytest.approx(0.25)


class _Brightness(torch.nn.Module):
    """Class 0's logit is the mean brightness of the left half; class 1's is fixed at 0.5."""

    def forward(self, x):
        left = x[:, :, :, : x.shape[-1] // 2].mean(dim=(1, 2, 3))
        return torch.stack([10 * left, torch.full_like(left, 5.0)], dim=1)


def test_faithfulness_rewards_the_map_that_points_at_the_evidence():
    x = torch.ones(2, 3, 8, 8)
    targets = torch.zeros(2, dtype=torch.long)
    right = torch.zeros(2, 8, 8)
    right[:, :, 4:] = 1
    left = 1 - right
    model = _Brightness()
    good, bad = masked_confidence(model, x, left, targets), masked_confidence(model, x, right, targets)
    assert good.average_drop == pytest.approx(0.0, abs=1e-6) and bad.average_drop > 0.9
    del_good, _ = deletion_insertion(model, x, left, targets, steps=8)
    del_bad, _ = deletion_insertion(model, x, right, targets, steps=8)
    assert (del_good < del_bad - 0.4).all()  # removing the evidence first drops the score at once
    constant = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    torch.nn.init.zeros_(constant[1].weight), torch.nn.init.constant_(constant[1].bias, 0.0)
    d, i = deletion_insertion(constant, x, left, targets, steps=4)
    assert torch.allclose(d, torch.full((2,), 0.5)) and torch.allclose(i, torch.full((2,), 0.5))


def test_gradcam_on_real_imagenette_beats_a_shuffled_map(data_root):
    """On real images the Grad-CAM mask keeps the class evidence; the same values shuffled do not."""
    model = load_pretrained("mobilenet_v2_imagenet", data_root)
    images = load_arrays("imagenette", "val", data_root).images
    x = images[torch.arange(0, 1000, 125)].float() / 255
    targets = model(x).argmax(1).detach()
    maps = compute_cam("gradcam", model, x, "features.18", targets=targets)
    assert maps.shape == (8, 224, 224)
    shuffled = maps.flatten(1)[:, torch.randperm(224 * 224, generator=torch.Generator().manual_seed(0))].view_as(maps)
    kept, scattered = masked_confidence(model, x, maps, targets), masked_confidence(model, x, shuffled, targets)
    assert kept.average_drop < scattered.average_drop - 0.3
    plain = compute_cam("cam", model, x, "features.18", classifier="classifier.1", targets=targets)
    assert torch.allclose(plain, maps, atol=1e-4)
