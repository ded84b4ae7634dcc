import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlapps.data import ResidentLoader, Transform, get_dataset
from dlapps.explain import layer_gradient_norms
from dlapps.models import create_model


@pytest.fixture(scope="module")
def batches(mnist_test):
    spec = get_dataset("mnist")
    loader = ResidentLoader(mnist_test.subset(256), batch_size=64, transform=Transform(mean=spec.mean, std=spec.std))
    return list(loader)


def test_matches_backward_and_leaves_grad_untouched(batches):
    torch.manual_seed(0)
    model = create_model("residual_mlp", num_classes=10, in_shape=(1, 28, 28), depth=4, layers_per_block=2)
    result = layer_gradient_norms(model, batches[:1])
    assert all(p.grad is None for p in model.parameters())
    assert result.names == (
        "stem.1",
        "hidden.0.residual.0",
        "hidden.0.residual.2",
        "hidden.1.residual.0",
        "hidden.1.residual.2",
        "head",
    )
    inputs, labels = batches[0]
    F.cross_entropy(model(inputs), labels).backward()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert torch.allclose(result.weight, torch.stack([m.weight.grad.norm() for m in linears]))
    assert torch.allclose(result.bias, torch.stack([m.bias.grad.norm() for m in linears]))


def test_averages_over_batches(batches):
    model = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), depth=2)
    each = [layer_gradient_norms(model, [b]) for b in batches]
    mean = layer_gradient_norms(model, batches)
    assert torch.allclose(mean.weight, torch.stack([e.weight for e in each]).mean(0))


def test_plain_deep_mlp_vanishes_residual_does_not(batches):
    torch.manual_seed(0)
    plain = layer_gradient_norms(create_model("mlp", num_classes=10, in_shape=(1, 28, 28), depth=16), batches)
    torch.manual_seed(0)
    residual = layer_gradient_norms(
        create_model("residual_mlp", num_classes=10, in_shape=(1, 28, 28), depth=16, layers_per_block=2), batches
    )
    assert plain.weight[0] / plain.weight[-1] < 1e-4
    assert residual.weight[0] / residual.weight[-1] > 0.1


def test_layer_without_bias_is_nan_and_empty_inputs_fail(batches):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 8, bias=False), nn.ReLU(), nn.Linear(8, 10))
    result = layer_gradient_norms(model, batches[:1])
    assert math.isnan(result.bias[0]) and result.bias[1] > 0 and result.weight.shape == (2,)
    with pytest.raises(ValueError, match="no batches"):
        layer_gradient_norms(model, [])
    with pytest.raises(ValueError, match="has no layer"):
        layer_gradient_norms(nn.Sequential(nn.Flatten()), batches[:1])
