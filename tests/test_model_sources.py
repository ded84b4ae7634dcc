"""Models from timm (``timm:<name>``) and from a user's own code (``file.py:factory``, ``package.module:factory``):
built, normalised, loaded from weights files and timm's cache, and refused in one line when they cannot be."""

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dlapps.config import apply_overrides
from dlapps.errors import CheckpointError, ConfigError, DataError
from dlapps.experiments import STUDIES
from dlapps.models import create_model, from_checkpoint, from_weights
from dlapps.models.classifier import check_input, from_timm_pretrained
from dlapps.models.registry import ARCHITECTURE, logits_of
from dlapps.train import ClassifierRecipe
from dlapps.train.model_spec import ModelSpec
from helpers import assert_one_line_error, dlapps_main

timm = pytest.importorskip("timm")

TINY_VIT = {"img_size": 32, "patch_size": 4, "depth": 1, "embed_dim": 32, "num_heads": 2}
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def normalised(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


def test_a_timm_model_is_timms_own_taking_images_in_0_1():
    torch.manual_seed(0)
    model = create_model(
        "timm:vit_tiny_patch16_224", num_classes=7, in_shape=(3, 32, 32), mean=MEAN, std=STD, **TINY_VIT
    )
    torch.manual_seed(0)
    plain = timm.create_model("vit_tiny_patch16_224", num_classes=7, **TINY_VIT)
    assert type(model) is type(plain) and model.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(model.state_dict())  # timm's own keys: its weight files load strictly
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model.eval()(x), plain.eval()(normalised(x)), atol=1e-6)


def test_model_settings_are_keyword_arguments():
    recipe = apply_overrides(
        ClassifierRecipe("timm:vit_tiny_patch16_224"),
        ["model.img_size=32", "model.patch_size=4", "model.qkv_bias=false", "model.act_layer=gelu", "train.epochs=2"],
    )
    assert recipe.hparams == (("act_layer", "gelu"), ("img_size", 32), ("patch_size", 4), ("qkv_bias", False))
    assert recipe.model == "timm:vit_tiny_patch16_224" and recipe.train.epochs == 2
    assert recipe.key().startswith("timm-vit_tiny_patch16_224-cifar10-")
    config = STUDIES["fgsm"].config("quick", ["model=timm:vit_tiny_patch16_224", "model.img_size=32"])
    assert config.model.hparams == (("img_size", 32),) and config.model.kind == "train"
    assert dict(config.model.recipe("cifar10", None).hparams) == {"img_size": 32}
    with pytest.raises(ConfigError, match="model 'small_cnn' takes no wieghts; it takes"):
        STUDIES["fgsm"].config("quick", ["model=small_cnn", "model.wieghts=w.pth"])  # a typo is not a setting
    with pytest.raises(ConfigError, match="resnet20_cifar10 is not an architecture, so it takes no settings"):
        STUDIES["fgsm"].config("quick", ["model=resnet20_cifar10", "model.depth=3"])
    with pytest.raises(ConfigError, match="model.x takes a number, a text"):
        apply_overrides(ClassifierRecipe("small_cnn"), ['model.x={"a": 1}'])


def test_bad_timm_names_and_settings_are_one_line(monkeypatch):
    with pytest.raises(ConfigError, match="timm has no model 'vit_tiny_patch16_22'; closest: vit_tiny_patch16_224"):
        ARCHITECTURE.check("timm:vit_tiny_patch16_22")
    with pytest.raises(ConfigError, match="timm:resnet18 does not take these settings"):
        create_model("timm:resnet18", num_classes=10, in_shape=(3, 32, 32), img_size=32)
    monkeypatch.setitem(sys.modules, "timm", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"need timm, which is not installed: pip install 'dlapps\[timm\]'"):
        ARCHITECTURE.check("timm:resnet18")


def test_the_train_command_refuses_a_bad_timm_name_before_any_work(tmp_path, data_root):
    result = dlapps_main("train", "--model", "timm:convnext_atoo", "--out", str(tmp_path), data_root=data_root)
    assert_one_line_error(result, "timm has no model 'convnext_atoo'; closest: convnext_atto")
    assert not list(tmp_path.iterdir())


def test_a_users_timm_weights_take_timms_normalisation(tmp_path):
    torch.manual_seed(1)
    trained = timm.create_model("vit_tiny_patch16_224", num_classes=5, **TINY_VIT)
    save_file(trained.state_dict(), str(tmp_path / "vit.safetensors"))
    loaded = from_weights("timm:vit_tiny_patch16_224", tmp_path / "vit.safetensors", num_classes=10,
                          in_shape=(3, 32, 32), **TINY_VIT)  # fmt: skip
    assert loaded.num_outputs == 5 and loaded.info["mean"] == (0.5, 0.5, 0.5)  # timm's pretrained config
    assert loaded.in_shape is None  # its settings changed the size the config fixes
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(loaded.module(x), trained.eval()((x - 0.5) / 0.5), atol=1e-6)


def _hub_cache(root: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """The layout huggingface_hub keeps a downloaded file in: what timm reads when the weights are cached."""
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    return root


def test_timms_pretrained_weights_come_from_its_cache_or_with_download(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    torch.manual_seed(2)
    published = timm.create_model("vit_tiny_patch16_224", depth=1)  # stands in for the published weights
    repo = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # the default tag's address on the hub
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache; --download fetches them"):
        from_timm_pretrained("timm:vit_tiny_patch16_224", in_shape=(3, 224, 224), depth=1)
    assert hub.HF_HUB_OFFLINE is False  # given back as it was
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(_hub_cache(tmp_path / "cache", repo, published.state_dict())))
    loaded = from_timm_pretrained("timm:vit_tiny_patch16_224", in_shape=(3, 224, 224), depth=1)
    assert loaded.trained_on == "imagenet" and len(loaded.classes) == 1000 and loaded.in_shape == (3, 224, 224)
    x = torch.rand(1, 3, 224, 224)
    assert torch.allclose(loaded.module(x), published.eval()((x - 0.5) / 0.5), atol=1e-5)
    spec = ModelSpec("timm:vit_tiny_patch16_224", hparams=(("pretrained", True),))
    assert spec.kind == "timm" and spec.input_size() == 224


FACTORY = """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes, width):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
            self.head = nn.Linear(width, num_classes)

        def forward(self, x):
            features = self.body(x)
            return {OUTPUT}

    def build(num_classes, width=8):
        return Net(num_classes, width)

    def not_a_model():
        return "a model"
"""


@pytest.mark.parametrize(
    "output",
    ["self.head(features)", "(self.head(features), features)", "{'logits': self.head(features), 'f': features}"],
)
def test_a_factory_in_a_file_with_tensor_tuple_or_mapping_output(tmp_path, output):
    path = write(tmp_path / "net.py", FACTORY.replace("{OUTPUT}", output))
    torch.manual_seed(0)
    model = create_model(f"{path}:build", num_classes=4, in_shape=(3, 16, 16), width=6, mean=MEAN, std=STD).eval()
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    expected = model.head(model.body(normalised(x)))
    assert torch.equal(model(x), expected)  # the logits, whatever the model returns
    save_file(model.state_dict(), str(tmp_path / "net.safetensors"))
    loaded = from_weights(f"{path}:build", tmp_path / "net.safetensors", num_classes=4, in_shape=(3, 16, 16),
                          mean=MEAN, std=STD, width=6)  # fmt: skip
    assert torch.equal(loaded.module(x), expected) and loaded.title == "build from net.py (net.safetensors)"


def test_a_factory_in_a_package_module():
    model = create_model("torchvision.models:resnet18", num_classes=7, in_shape=(3, 32, 32))
    assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 7)


def test_a_factory_model_trained_here_is_a_checkpoint(tmp_path, data_root, monkeypatch):
    data_root = data_root.resolve()  # it may be relative to the folder the tests started in
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "net.py", FACTORY.replace("{OUTPUT}", "(self.head(features), features)")).name
    result = dlapps_main(
        "train", "--model", f"{path}:build", "--set", "model.width=4", "--dataset", "cifar10", "--set", "train.epochs=1",
        "--set", "train_subset=256", "--set", "test_subset=64", "--out", str(tmp_path / "models"), "--no-progress",
        data_root=data_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (checkpoint,) = (tmp_path / "models").glob("net-build-cifar10-*.safetensors")
    monkeypatch.chdir(tmp_path.parent)  # the checkpoint names the factory's file by its full path
    loaded = from_checkpoint(checkpoint)
    assert loaded.module(torch.rand(2, 3, 32, 32)).shape == (2, 10) and loaded.title.startswith(
        "build from net.py trained on CIFAR-10"
    )
    grey = dlapps_main("train", "--model", f"{tmp_path / path}:build", "--dataset", "mnist", "--out", str(tmp_path / "grey"),
                       data_root=data_root)  # fmt: skip
    assert_one_line_error(grey, "build from net.py cannot take the (1, 28, 28) (C, H, W) images of MNIST")
    assert not (tmp_path / "grey").exists() or not list((tmp_path / "grey").glob("*.safetensors"))


def test_bad_factories_are_one_line(tmp_path):
    good = write(tmp_path / "net.py", FACTORY.replace("{OUTPUT}", "self.head(features)"))
    write(tmp_path / "broken.py", "import torch\nraise RuntimeError('no GPU here')\n")
    cases = {
        f"{tmp_path}/broken.py:build": r"could not import .*broken.py \(RuntimeError: no GPU here\)",
        f"{tmp_path}/absent.py:build": "model file .*absent.py does not exist",
        f"{good}:missing": "net.py has no callable 'missing'",
        "no_such_package.models:build": r"could not import no_such_package.models \(ModuleNotFoundError",
    }
    for name, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            ARCHITECTURE.check(name)
    with pytest.raises(ConfigError, match="net.py:not_a_model returned a str, not a torch nn.Module"):
        create_model(f"{good}:not_a_model", num_classes=10, in_shape=(3, 8, 8))
    with pytest.raises(ConfigError, match=r"net.py:build failed to build the model \(TypeError"):
        create_model(f"{good}:build", num_classes=10, in_shape=(3, 8, 8), width="wide")


def test_a_model_that_is_not_an_image_classifier_is_one_line(tmp_path, data_root):
    path = write(tmp_path / "net.py", FACTORY.replace("{OUTPUT}", "x"))  # gives back its input
    save_file(create_model(f"{path}:build", num_classes=10, in_shape=(3, 32, 32)).state_dict(), str(tmp_path / "w.st"))
    (tmp_path / "w.safetensors").write_bytes((tmp_path / "w.st").read_bytes())
    classifier = from_weights(f"{path}:build", tmp_path / "w.safetensors", num_classes=10, in_shape=(3, 32, 32))
    with pytest.raises(DataError, match=r"not an image classifier .* outputs a tensor of shape \(1, 3, 32, 32\)"):
        check_input(classifier, (3, 32, 32), "CIFAR-10")
    result = dlapps_main("run", "fgsm", "--set", f"model={path}:build", "--set", f"model.weights={tmp_path / 'w.safetensors'}",
                         "--out", str(tmp_path / "run"), data_root=data_root)  # fmt: skip
    assert_one_line_error(result, "not an image classifier that dlapps can read")
    assert logits_of({"pooled": 1}) == {"pooled": 1}  # a mapping without logits is left for the check to refuse


def test_detectors_that_read_the_head_refuse_a_model_of_two_heads():
    """A distilled DeiT's logits average two heads: no one linear layer gives them, and ViM and ReAct say so."""
    from dlapps.ood import DETECTORS
    from dlapps.ood.scoring import evaluate_detectors

    torch.manual_seed(0)
    deit = create_model("timm:deit_tiny_distilled_patch16_224", num_classes=10, in_shape=(3, 32, 32), **TINY_VIT)
    batches = [(torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,)))]
    detectors = {name: DETECTORS[name]() for name in ("msp", "vim", "react", "mahalanobis")}
    found = evaluate_detectors(detectors, deit.eval(), batches, batches, {"noise": batches}, skip_unusable=True)
    assert set(found.skipped) == {"vim", "react"} and set(found.id_scores) == {"msp", "mahalanobis"}
    assert "the model's logits are not that layer's output" in found.skipped["vim"]
