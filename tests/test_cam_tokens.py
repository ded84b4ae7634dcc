"""Class activation maps on vision transformers (timm ViT, DeiT, EVA, Swin; torchvision's ViT): tokens and
channels-last maps laid out as (N, K, h, w), default layers, and equality with pytorch-grad-cam."""

import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform, vit_reshape_transform
from torch import nn

from dlapps.errors import ConfigError
from dlapps.explain import compute_cam
from dlapps.models import create_model
from dlapps.models.hooks import feature_layer, find_head
from dlapps.models.spatial import feature_maps, token_grid

timm = pytest.importorskip("timm")

TINY_VIT = {"img_size": 32, "patch_size": 4, "depth": 2, "embed_dim": 64, "num_heads": 2, "num_classes": 10}
TINY_SWIN = {
    "img_size": 32,
    "window_size": 4,
    "embed_dim": 32,
    "depths": (2, 2),
    "num_heads": (2, 4),
    "num_classes": 10,
}
METHODS = ("gradcam", "gradcam++", "layercam", "scorecam")


def _seeded(build, seed=0):
    """``build()`` with seeded random weights: every linear layer as PyTorch initialises it (timm and torchvision
    start some at zero or near it, which leaves no gradient), the head at std 1 so that classes differ; otherwise
    Score-CAM's channel weights are all but uniform and their sum cancels on a layer-normed output."""
    torch.manual_seed(seed)
    model = build().eval()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()
    nn.init.normal_(find_head(model)[1].weight, std=1.0)
    return model


@pytest.fixture(scope="module")
def models():
    """Tiny transformers with seeded random weights: prefix tokens 1 (ViT, EVA), 2 (DeiT), 5 (ViT + 4 registers),
    none and channels-last (Swin); torchvision's ViT has no timm attributes to read the layout from."""
    from torchvision.models.vision_transformer import VisionTransformer

    return {
        "vit": _seeded(lambda: timm.create_model("vit_tiny_patch16_224", **TINY_VIT)),
        "vit_reg": _seeded(lambda: timm.create_model("vit_tiny_patch16_224", **TINY_VIT, reg_tokens=4)),
        "deit": _seeded(lambda: timm.create_model("deit_tiny_distilled_patch16_224", **TINY_VIT)),
        "eva": _seeded(lambda: timm.create_model("eva02_tiny_patch14_224", **TINY_VIT)),
        "swin": _seeded(lambda: timm.create_model("swin_tiny_patch4_window7_224", **TINY_SWIN)),
        "tv_vit": _seeded(
            lambda: VisionTransformer(
                image_size=32, patch_size=4, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=10
            )
        ),
    }


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(1)
    return torch.rand(4, 3, 32, 32), torch.tensor([0, 3, 5, 9])


DEFAULT_LAYERS = {
    "vit": "blocks.1.norm1",
    "vit_reg": "blocks.1.norm1",
    "deit": "blocks.1.norm1",
    "eva": "blocks.1.norm1",
    "swin": "layers.1.blocks.1.norm1",
    "tv_vit": "encoder.layers.encoder_layer_1.ln_1",
}


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("name", list(DEFAULT_LAYERS))
def test_default_layer_and_every_method_on_transformers(models, batch, name):
    model, (x, targets) = models[name], batch
    layer = feature_layer(model, x[:1])
    assert layer == DEFAULT_LAYERS[name]
    for method in METHODS:
        maps = compute_cam(method, model, x, layer, targets=targets)
        assert maps.shape == (4, 32, 32) and maps.min() >= 0 and maps.max() <= 1
        peaks = maps.flatten(1).max(1).values  # 1, or 0 where relu left nothing (random weights may do that)
        assert ((peaks - 1).abs() < 1e-5).any() and ((peaks - 1).abs() < 1e-5).logical_or(peaks == 0).all()
        assert _hook_count(model) == 0 and not model.training


def _old_feature_layer(model, example):
    """The rule before transformers: the last module to output (N, K, h, w) with h*w > 1."""
    finished = []
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, out, n=n: finished.append(n) if torch.is_tensor(out) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1 else None
        )
        for n, m in model.named_modules()
        if n
    ]  # fmt: skip
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    return finished[-1]


def test_convnet_default_layers_are_unchanged():
    from torchvision.models import mobilenet_v2

    resnet = create_model("cifar_resnet", num_classes=10, in_shape=(3, 32, 32), blocks=1, widths=(8, 16, 32)).eval()
    small = create_model("small_cnn", num_classes=10, in_shape=(3, 32, 32)).eval()
    mobilenet = mobilenet_v2(num_classes=10).eval()
    x = torch.rand(1, 3, 64, 64)
    assert feature_layer(resnet, x[..., :32, :32]) == "layer3"
    assert feature_layer(mobilenet, x) == "features" == _old_feature_layer(mobilenet, x)
    assert feature_layer(small, x[..., :32, :32]) == _old_feature_layer(small, x[..., :32, :32])


def _prefix_transform(prefix, h=8, w=8):
    """pytorch-grad-cam's ViT reshape transform (which drops 1 token) for ``prefix`` dropped tokens."""
    return lambda t: t[:, prefix:, :].reshape(t.size(0), h, w, t.size(2)).transpose(2, 3).transpose(1, 2)


REFERENCES = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM, "scorecam": ScoreCAM}
TRANSFORMS = {  # pytorch-grad-cam's documented reshape transforms, for this grid and these prefix tokens
    "vit": lambda t: vit_reshape_transform(t, height=8, width=8),
    "eva": lambda t: vit_reshape_transform(t, height=8, width=8),
    "tv_vit": lambda t: vit_reshape_transform(t, height=8, width=8),
    "vit_reg": _prefix_transform(5),
    "deit": _prefix_transform(2),
    # timm >= 0.9 keeps Swin's features channels-last (N, H, W, C); the documented transform takes tokens.
    "swin": lambda t: swinT_reshape_transform(t.flatten(1, 2), height=4, width=4),
}


def _reference(method, model, x, targets, layer, transform):
    with REFERENCES[method](model=model, target_layers=[model.get_submodule(layer)], reshape_transform=transform) as e:
        return e(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
@pytest.mark.parametrize("name", list(DEFAULT_LAYERS))
def test_agrees_with_pytorch_grad_cam(models, batch, name, method):
    model, (x, targets), layer = models[name], batch, DEFAULT_LAYERS[name]
    ours = compute_cam(method, model, x, layer, targets=targets)
    assert ours.shape == (len(x), 32, 32)
    np.testing.assert_allclose(ours.numpy(), _reference(method, model, x, targets, layer, TRANSFORMS[name]), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(DEFAULT_LAYERS))
def test_agrees_with_pytorch_grad_cam_in_float64(models, batch, name, method):
    """Every method, in float64: Grad-CAM++'s and Score-CAM's maps on a layer-normed token layer are
    ill-conditioned (in float32 each implementation is up to 6e-5 from a float64 run on these models, so the
    two differ by up to 1.4e-4), while in float64 they agree to pytorch-grad-cam's own float32 resize."""
    model, (x, targets), layer = copy.deepcopy(models[name]).double(), batch, DEFAULT_LAYERS[name]
    x = x.double()
    ours = compute_cam(method, model, x, layer, targets=targets)
    np.testing.assert_allclose(ours.numpy(), _reference(method, model, x, targets, layer, TRANSFORMS[name]), atol=1e-6)


def test_feature_maps_layouts(models):
    vit, swin = models["vit"], models["swin"]
    maps = torch.rand(2, 8, 4, 4)
    assert feature_maps(vit, maps, (32, 32)) is maps  # (N, K, h, w) of a channels-first model: as it is
    nhwc = torch.rand(2, 4, 4, 64)
    assert torch.equal(feature_maps(swin, nhwc, (32, 32)), nhwc.permute(0, 3, 1, 2))
    assert feature_maps(swin, maps, (32, 32), layer=swin.patch_embed.proj) is maps  # a conv is channels-first
    tokens = torch.rand(2, 65, 64)
    assert torch.equal(feature_maps(vit, tokens, (32, 32)), _prefix_transform(1)(tokens))
    assert torch.equal(feature_maps(vit, tokens[:, 1:], (32, 32)), _prefix_transform(0)(tokens[:, 1:]))
    assert feature_layer(nn.Sequential(nn.Identity(), vit), torch.rand(1, 3, 32, 32)) == "1.blocks.1.norm1"  # wrapped
    # Without timm's attributes the prefix and grid come from the token count and the image's aspect ratio.
    bare = nn.Identity()
    assert token_grid(bare, 65, (32, 32)) == (1, 8, 8)
    assert token_grid(bare, 68, (32, 32)) == (4, 8, 8)
    assert token_grid(bare, 2 + 32, (32, 64)) == (2, 4, 8)
    assert token_grid(bare, 64 + 30, (32, 32)) is None  # more prefix tokens than a model has
    with pytest.raises(ConfigError, match=r"^the layer must output .* not shape \(2, 10\); choose") as error:
        feature_maps(vit, torch.rand(2, 10), (32, 32))
    assert "\n" not in str(error.value)


def test_unusable_layers_are_one_line_errors(models, batch):
    vit, swin, (x, targets) = models["vit"], models["swin"], batch
    with pytest.raises(ConfigError, match=r"^layer 'head' must output \(N, K, h, w\) .* not shape \(4, 10\)"):
        compute_cam("gradcam", vit, x, "head", targets=targets)
    with pytest.raises(ConfigError, match="layer 'layers.0.blocks.0.attn' outputs 16 maps for 4 images"):
        compute_cam("gradcam", swin, x, "layers.0.blocks.0.attn", targets=targets)  # 4 windows per image
    with pytest.raises(ConfigError, match="not 'head' applied to the global average of 'blocks.1.norm1'.*use Grad-CAM"):
        compute_cam("cam", vit, x, "blocks.1.norm1", targets=targets)  # the class token, not the average, is read
    assert _hook_count(vit) == 0 and _hook_count(swin) == 0
