import pytest
import torch

from dlapps.data import ResidentLoader
from dlapps.errors import CheckpointError, ConfigError, DataError
from dlapps.models import CifarResNet, create_model, load_pretrained, load_weights
from dlapps.train import evaluate

CIFAR = {"num_classes": 10, "in_shape": (3, 32, 32)}
IMAGENET_STATS = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def _params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "params"), [("resnet20", 269_722), ("resnet32", 464_154), ("resnet56", 853_018)])
def test_parameter_counts_match_he_et_al(name, params):
    assert _params(create_model(name, **CIFAR)) == params
    assert _params(create_model(name, **CIFAR, skip=False)) == params  # option A shortcuts have no parameters


def test_shapes_features_and_skip_switch():
    torch.manual_seed(0)
    model = create_model("cifar_resnet", **CIFAR, blocks=2, widths=(8, 16, 32)).eval()
    x = torch.rand(4, 3, 32, 32)
    assert model(x).shape == (4, 10) and model.features(x).shape == (4, 32, 8, 8)
    plain = CifarResNet(2, 10, skip=False, widths=(8, 16, 32)).eval()
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(plain(x), model(x))
    with pytest.raises(ConfigError, match="blocks must be positive"):
        create_model("cifar_resnet", **CIFAR, blocks=0)
    with pytest.raises(ConfigError, match="widths must be"):
        create_model("cifar_resnet", **CIFAR, widths=(32, 16, 8))


def test_model_owned_normalisation_equals_external():
    torch.manual_seed(0)
    inner = create_model("resnet20", **CIFAR).eval()
    owned = create_model("resnet20", **CIFAR, **IMAGENET_STATS).eval()
    owned.load_state_dict(inner.state_dict())
    x = torch.rand(2, 3, 32, 32)
    mean, std = (
        torch.tensor(IMAGENET_STATS["mean"]).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STATS["std"]).view(1, 3, 1, 1),
    )
    assert torch.allclose(owned(x), inner((x - mean) / std), atol=1e-5)


@pytest.mark.slow  # the whole CIFAR-10 test split
def test_shared_resnet20_checkpoint_scores_its_published_accuracy(resnet20, cifar10_test):
    _, accuracy = evaluate(resnet20, ResidentLoader(cifar10_test, batch_size=500))
    assert accuracy == pytest.approx(0.9173, abs=0.001)
    assert not resnet20.training


def test_pretrained_by_name_errors(tmp_path):
    with pytest.raises(CheckpointError, match="unknown pretrained model 'resnet99'"):
        load_pretrained("resnet99", tmp_path)
    with pytest.raises(
        DataError,
        match=r"missing from the data root .*: ResNet-20 weights \(resnet20_cifar10\); "
        r"get resnet20_cifar10 from https://github.com/akamaster/.*resnet20-12fca82f.th \(1 MB\)",
    ):
        load_pretrained("resnet20_cifar10", tmp_path)
    with pytest.raises(DataError, match="no public address for MobileNetV2 weights .*place it at .*weights/mobilenet"):
        load_pretrained("mobilenet_v2_imagenet", tmp_path)


def test_weights_that_do_not_fit_name_the_keys(data_root):
    with pytest.raises(CheckpointError, match=r"does not fit CifarResNet: missing layer1\.3\.conv1\.weight"):
        load_weights(
            create_model("resnet32", **CIFAR), data_root / "weights" / "resnet20_cifar10_akamaster-12fca82f.th"
        )
