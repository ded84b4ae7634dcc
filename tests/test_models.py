import pytest
import torch
from torch import nn

from dlapps.errors import ConfigError
from dlapps.models import MLP, ResidualMLP, create_model, list_models

MNIST = {"num_classes": 10, "in_shape": (1, 28, 28)}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", [2, 8, 32])
def test_same_depth_same_parameters(depth):
    expected = (784 * 16 + 16) + depth * (16 * 16 + 16) + (16 * 10 + 10)
    assert _params(create_model("mlp", **MNIST, depth=depth)) == expected
    for k in (1, 2):
        assert _params(create_model("residual_mlp", **MNIST, depth=depth, layers_per_block=k)) == expected


def test_output_shape_and_image_input():
    x = torch.randn(5, 1, 28, 28)
    for name in ("mlp", "residual_mlp"):
        assert create_model(name, **MNIST, depth=4).forward(x).shape == (5, 10)
    assert len(create_model("residual_mlp", **MNIST, depth=8, layers_per_block=2).hidden) == 4
    assert {"mlp", "residual_mlp", "resnet20", "cifar_resnet"} <= set(list_models())


def test_same_seed_same_initial_weights():
    torch.manual_seed(5)
    plain = create_model("mlp", **MNIST, depth=4)
    torch.manual_seed(5)
    residual = create_model("residual_mlp", **MNIST, depth=4, layers_per_block=2)
    for a, b in zip(plain.parameters(), residual.parameters(), strict=True):
        assert torch.equal(a, b)


def test_zero_residual_branches_pass_the_stem_through():
    model = ResidualMLP(784, 16, 6, 10, layers_per_block=2)
    for block in model.hidden:
        for layer in block.residual:
            if isinstance(layer, nn.Linear):
                nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(model(x), model.head(model.stem(x)))
    plain = MLP(784, 16, 6, 10)
    for layer in plain.hidden:
        nn.init.zeros_(layer[0].weight), nn.init.zeros_(layer[0].bias)
    assert torch.allclose(plain(x), plain.head(torch.zeros(3, 16)))  # a plain net cannot pass anything through


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 0}, "depth must be positive"),
        ({"depth": -3}, "depth must be positive"),
        ({"width": 0}, "width must be positive"),
        ({"depth": 3, "layers_per_block": 2}, "multiple of layers_per_block"),
    ],
)
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_model("residual_mlp", **MNIST, **kwargs)


def test_registry_errors():
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'"):
        create_model("resnet9000", **MNIST)
    with pytest.raises(ConfigError, match="takes no layers_per_block"):
        create_model("mlp", **MNIST, layers_per_block=2)


def test_small_cnn_shapes_and_normalisation():
    model = create_model(
        "small_cnn", num_classes=10, in_shape=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)
    )
    x = torch.rand(3, 3, 32, 32)
    assert model(x).shape == (3, 10)
    bare = create_model("small_cnn", num_classes=10, in_shape=(3, 32, 32))
    bare.load_state_dict(model.state_dict())
    assert torch.allclose(model(x), bare((x - 0.5) / 0.25), atol=1e-5)


def test_channels_last_where_it_runs_faster_with_the_same_outputs():
    """On the CPU: convnets go channels-last, except, on several threads, those with batch norms under 16
    channels (whose multithreaded channels-last backward is slower); MLPs stay as they are. The outputs do
    not change."""
    from dlapps.models import Classifier
    from dlapps.models.layout import channels_last_pays

    cpu, cifar = torch.device("cpu"), {"num_classes": 10, "in_shape": (3, 32, 32)}
    torch.manual_seed(0)
    wide, narrow = create_model("cifar_resnet", **cifar), create_model("cifar_resnet", **cifar, widths=(8, 16, 32))
    assert channels_last_pays(narrow, torch.device("cuda"))  # cuDNN has no such exception
    threads = torch.get_num_threads()
    try:
        for count in (2, 1):  # 1: as in a worker training side by side
            torch.set_num_threads(count)
            assert channels_last_pays(wide, cpu) and channels_last_pays(create_model("small_cnn", **cifar), cpu)
            assert channels_last_pays(narrow, cpu) == (count == 1)
            assert not channels_last_pays(create_model("mlp", **MNIST), cpu)
        torch.set_num_threads(2)
        x = torch.rand(8, 3, 32, 32)
        for model in (wide.eval(), narrow.eval()):
            expected = model(x)
            classifier = Classifier(model, "test").to("cpu")
            conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
            assert conv.weight.is_contiguous(memory_format=torch.channels_last) == (model is wide)
            torch.testing.assert_close(classifier.module(x), expected, atol=1e-5, rtol=1e-4)
    finally:
        torch.set_num_threads(threads)


def test_inference_batches_fit_a_cpu_cache_and_leave_the_outputs_alone():
    """128 CIFAR images at a time on a CPU, as many times fewer as an image holds more values, not under 8 for
    mid-sized images, never none; 1,024 on a GPU. Predictions and OOD scores do not depend on the batch size."""
    from dlapps.data import ImageArrays
    from dlapps.evaluate.accuracy import predict
    from dlapps.models.layout import inference_batch
    from dlapps.ood import MSP, fit_detectors, score_detectors

    assert inference_batch((3, 32, 32), torch.device("cpu")) == 128
    assert inference_batch((1, 28, 28), "cpu") == 501  # MNIST: 784 values an image
    assert inference_batch((3, 224, 224), "cpu") == 8  # not 2: per-batch overheads show under 8
    assert inference_batch((3, 1024, 1024), "cpu") == 2
    assert inference_batch((3, 4096, 4096), "cpu") == 1
    assert inference_batch((3, 32, 32), "cuda") == 1024
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_shape=(3, 32, 32)).eval()
    data = ImageArrays(
        torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8),
        torch.zeros(300, dtype=torch.long),
        tuple("abcdefghij"),
        "random",
    )
    logits = predict(model, data)  # 128, 128, 44
    torch.testing.assert_close(logits, predict(model, data, batch_size=300), atol=1e-5, rtol=1e-4)
    detectors = {"msp": MSP()}
    fit_detectors(detectors, model, None)
    scores = score_detectors(detectors, data).scores["msp"]
    torch.testing.assert_close(
        scores, score_detectors(detectors, data, batch_size=300).scores["msp"], atol=1e-6, rtol=1e-5
    )
