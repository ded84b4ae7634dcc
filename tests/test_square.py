"""The Square attack: the ball, one query per step, no gradient, L∞ only, its window schedule, restarts, a model
that masks its gradient, and agreement with torchattacks' Square on the published ResNet-20."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlapps.attacks import attack, attack_arrays, make_attack, robust_accuracy
from dlapps.errors import AttackError
from test_attacks import tiny_batch, tiny_model

torchattacks = pytest.importorskip("torchattacks")  # a dev-only dependency


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _correct_batch(model: nn.Module, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs labelled with the model's own predictions: every sample starts correctly classified."""
    x, _ = tiny_batch(n)
    with torch.no_grad():
        return x, model(x).argmax(1)


class Rounded(nn.Module):
    """The model on its input rounded to 8 bits: the rounding's gradient is zero, so gradient attacks see none."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 255) / 255)


class NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("this model has no gradient")


class Opaque(nn.Module):
    """A model whose backward pass raises: only its scores can be read."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(NoBackward.apply(x))


@pytest.mark.parametrize("target", [None, "random"])
def test_examples_are_corners_of_the_ball_in_the_box_with_their_own_logits(target):
    model = tiny_model()
    x, y = _correct_batch(model, 50)
    eps = 8 / 255 if target is None else 32 / 255  # hitting a random target takes more
    result = attack(model, x, y, method="square", eps=eps, steps=60, target=target, generator=_seeded(), batch_size=16)
    adv = result.adversarial
    assert adv.shape == x.shape and adv.dtype == x.dtype and not adv.requires_grad
    # every value is the input moved by ±ε, clipped to the box
    assert torch.minimum((adv - (x + eps).clamp(max=1)).abs(), (adv - (x - eps).clamp(min=0)).abs()).max() <= 1e-6
    assert adv.min() >= 0 and adv.max() <= 1 and (adv - x).abs().max() <= eps + 1e-6
    with torch.no_grad():
        logits = model(adv)
    assert torch.equal(logits.argmax(1), result.pred_after)  # the logits returned are the example's
    assert torch.allclose(F.softmax(logits, 1).gather(1, y[:, None]).squeeze(1), result.prob_after, atol=1e-6)
    assert result.success.any() and ((result.iterations >= 0) == result.success).all()
    assert (result.iterations <= 60).all()


def test_one_query_per_step_without_autograd():
    model, (x, y) = tiny_model(), tiny_batch(20)
    calls = []
    model.register_forward_hook(lambda module, args, out: calls.append((len(args[0]), torch.is_grad_enabled())))
    attack(model, x, y, method="square", eps=4 / 255, steps=30, early_stop=False, generator=_seeded())
    # the clean pass, the stripes, then one proposal per step: as torchattacks' n_queries=30 (1 + 30 evaluations)
    assert calls == [(20, False)] * (1 + 1 + 30)
    assert make_attack("square", eps=8 / 255).steps == 5000  # AutoAttack's budget by default


def test_a_model_without_gradient_is_still_attacked():
    model = Opaque(tiny_model())
    x, y = _correct_batch(model, 50)
    with pytest.raises(RuntimeError, match="no gradient"):
        attack(model, x, y, method="pgd", eps=8 / 255, steps=2)
    result = attack(model, x, y, method="square", eps=8 / 255, steps=100, generator=_seeded())
    assert result.success.float().mean() > 0.2
    assert all(p.grad is None for p in model.parameters())


def test_square_breaks_a_model_that_masks_its_gradient_where_pgd_does_not():
    plain = tiny_model()
    masked = Rounded(plain)
    x, y = _correct_batch(masked)
    eps = 8 / 255
    pgd = robust_accuracy(attack(masked, x, y, method="pgd", eps=eps, steps=10, restarts=2, generator=_seeded()))
    square = robust_accuracy(attack(masked, x, y, method="square", eps=eps, steps=100, generator=_seeded()))
    pgd_plain = robust_accuracy(attack(plain, x, y, method="pgd", eps=eps, steps=10, restarts=2, generator=_seeded()))
    assert pgd > 0.95  # no gradient: only the random starts fool a few
    assert pgd_plain < 0.75  # the same model without its rounding falls to PGD: the gradient was masked
    assert square < 0.8 and square < pgd - 0.15


def test_l2_and_bad_settings_are_clear_errors():
    model, (x, y) = tiny_model(), tiny_batch()
    for settings, message in [
        ({"threat": "l2", "eps": 0.5}, "square attacks within linf, not l2"),
        ({"p_init": 0.0}, r"p_init must be in \(0, 1\]"),
        ({"p_init": 1.5}, r"p_init must be in \(0, 1\]"),
    ]:
        with pytest.raises(AttackError, match=message):
            attack(model, x, y, method="square", **{"eps": 4 / 255, **settings})
    with pytest.raises(AttackError, match=r"square attacks images of shape \(N, C, H, W\)"):
        flat = nn.Linear(5, 3)
        attack(flat, x := torch.rand(4, 5), flat(x).argmax(1), method="square", eps=4 / 255, steps=2)


@pytest.mark.parametrize("queries", [37, 100, 1000, 5000, 10000])
def test_window_schedule_is_the_reference_one(queries):
    """The side of the square at each query, against torchattacks' (the authors' schedule, rescaled)."""
    reference = torchattacks.Square(tiny_model(), n_queries=queries, p_init=0.8)
    expected = [max(round(math.sqrt(reference.p_selection(i) * 32 * 32)), 1) for i in range(queries)]
    square = make_attack("square", eps=8 / 255, steps=queries, p_init=0.8)
    assert square.window_side(torch.arange(queries), 32, 32).tolist() == expected
    assert expected[0] == 29 and (queries < 1000 or expected[-1] == 1)


def test_runs_are_reproducible_and_restarts_attack_the_survivors():
    model = tiny_model()
    x, y = _correct_batch(model)
    once = [attack(model, x, y, method="square", eps=4 / 255, steps=40, generator=_seeded(s)) for s in (0, 0, 1)]
    assert torch.equal(once[0].adversarial, once[1].adversarial)
    assert not torch.equal(once[0].adversarial, once[2].adversarial)
    twice = attack(model, x, y, method="square", eps=4 / 255, steps=40, restarts=2, generator=_seeded(0))
    assert (twice.success >= once[0].success).all() and twice.success.sum() > once[0].success.sum()
    again = twice.success & ~once[0].success  # broken by the second run: its steps count after the first's 40
    assert (twice.iterations[again] >= 40).all()
    assert torch.equal(twice.iterations[once[0].success], once[0].iterations[once[0].success])


@pytest.mark.slow
def test_agrees_with_torchattacks_square_on_resnet20(cifar10_test, resnet20):
    """Robust accuracy of 100 CIFAR-10 images against 50 queries at 4/255 (about a minute on 2 busy cores);
    benchmarks/square_agreement.py compares 500 images at two ε."""
    data = cifar10_test.subset(100, seed=1)
    eps, queries = 4 / 255, 50
    ours = attack_arrays(resnet20, data, method="square", eps=eps, steps=queries, generator=_seeded())
    x, y = data.images.float() / 255, data.labels
    reference = torchattacks.Square(resnet20, norm="Linf", eps=eps, n_queries=queries, p_init=0.8, loss="margin")
    with torch.no_grad():
        theirs = (resnet20(reference(x, y)).argmax(1) == y).float().mean().item()
    assert 0.5 < theirs < 0.95  # a budget that fools some images, not all
    assert abs(robust_accuracy(ours) - theirs) <= 0.07
