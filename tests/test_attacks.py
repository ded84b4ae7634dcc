"""Attacks on tiny and constructed models: reference agreement, early stop, targets, bounds, modes, errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlapps.attacks import (
    AdversarialStepLoss,
    AttackResult,
    attack,
    attack_arrays,
    make_attack,
    perturb,
    robust_accuracy,
    success_rate,
    summarize,
)
from dlapps.errors import AttackError

torchattacks = pytest.importorskip("torchattacks")  # a dev-only dependency


def tiny_model() -> nn.Module:
    """A small random conv net with BatchNorm (eval mode), 10 classes, 3x8x8 inputs."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model[1].running_mean.uniform_(-0.1, 0.1)
        model[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


def tiny_batch(n: int = 50, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=generator)
    x[:, 0, 0, :4] = torch.tensor([0.0, 1.0, 0.0, 1.0])  # pixels on the box's faces
    return x, torch.randint(0, 10, (n,), generator=generator)


class Threshold(nn.Module):
    """Two classes, one pixel: class 0 while ``x < 0.5``, class 1 beyond. The attack gradient is +1 on it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1)[:, :1]
        return torch.cat([0.5 - z, torch.zeros_like(z)], 1)


class Ladder(nn.Module):
    """Three classes along one pixel: 0 below 0.5, 1 between 0.5 and 0.65, 2 above 0.65."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1)[:, :1]
        return torch.cat([1 - 2 * z, torch.zeros_like(z), 4 * z - 2.6], 1)


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_bim_mifgsm_without_early_stop_match_torchattacks(targeted):
    model, (x, y) = tiny_model(), tiny_batch()
    targets = (y + torch.randint(1, 10, y.shape, generator=torch.Generator().manual_seed(2))) % 10
    cases = [
        ("fgsm", torchattacks.FGSM(model, eps=8 / 255), {}),
        ("bim", torchattacks.BIM(model, eps=8 / 255, alpha=2 / 255, steps=10), {"alpha": 2 / 255, "steps": 10}),
        (
            "mifgsm",
            torchattacks.MIFGSM(model, eps=8 / 255, alpha=2 / 255, steps=10, decay=0.9),
            {"alpha": 2 / 255, "steps": 10, "decay": 0.9},
        ),
    ]
    for method, reference, kwargs in cases:
        if targeted:
            reference.set_mode_targeted_by_function(lambda inputs, labels: targets, quiet=True)
        expected = reference(x, y)
        result = attack(
            model, x, y, method=method, eps=8 / 255, early_stop=False, target=targets if targeted else None, **kwargs
        )
        assert (result.adversarial - expected).abs().max() <= 1e-6, method
        assert not torch.equal(result.adversarial, x)


def test_l2_steps_match_torchattacks_pgdl2():
    """BIM in the L2 ball is torchattacks' PGDL2 without its random start: normalised-gradient steps, then the
    projection onto the ball and the box."""
    model, (x, y) = tiny_model(), tiny_batch()
    expected = torchattacks.PGDL2(model, eps=0.5, alpha=0.1, steps=10, random_start=False)(x, y)
    result = attack(model, x, y, "bim", threat="l2", eps=0.5, alpha=0.1, steps=10, early_stop=False)
    assert (result.adversarial - expected).abs().max() <= 1e-5
    assert (result.adversarial - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5


def test_pgd_matches_torchattacks_in_distribution():
    model = tiny_model()
    x, _ = tiny_batch(2000, seed=3)
    y = model(x).argmax(1)  # every sample starts correctly classified
    eps, alpha, steps = 12 / 255, 3 / 255, 5
    torch.manual_seed(0)
    reference = (model(torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps)(x, y)).argmax(1) == y).float().mean()
    ours = [
        attack(
            model,
            x,
            y,
            method="pgd",
            eps=eps,
            alpha=alpha,
            steps=steps,
            early_stop=False,
            generator=torch.Generator().manual_seed(s),
        )
        for s in (0, 1)
    ]
    assert 0.2 < reference < 0.8  # a budget where robustness is neither none nor total
    assert all(abs(robust_accuracy(r) - reference.item()) < 0.03 for r in ours)
    assert not torch.equal(ours[0].adversarial, ours[1].adversarial)  # the start is random


def test_early_stop_counts_iterations_and_freezes_finished_samples():
    alpha = 0.02
    flips_after = torch.tensor([1, 2, 3, 5, 20])  # steps each sample needs; 20 exceeds the budget
    x = (0.5 - alpha * (flips_after - 0.5)).view(-1, 1, 1, 1)
    x = torch.cat([x, torch.tensor([0.6]).view(1, 1, 1, 1)])  # already class 1: not attacked
    y = torch.zeros(6, dtype=torch.int64)
    for batch_size in (None, 2):  # one batch, and slots refilled as samples finish
        result = attack(Threshold(), x, y, eps=1.0, alpha=alpha, steps=10, batch_size=batch_size)
        assert result.iterations.tolist() == [1, 2, 3, 5, -1, 0]
        assert result.success.tolist() == [True] * 4 + [False, True]
        assert result.attacked.tolist() == [True] * 5 + [False]
        moved = (result.adversarial - x).flatten()
        assert torch.allclose(moved, torch.tensor([1, 2, 3, 5, 10, 0]) * alpha)
    without = attack(Threshold(), x, y, eps=1.0, alpha=alpha, steps=10, early_stop=False)
    assert without.iterations.tolist() == [1, 2, 3, 5, -1, 0]  # the first step count at which it flipped
    assert torch.allclose((without.adversarial - x).flatten()[:5], torch.full((5,), 10 * alpha))


def test_the_batch_halves_in_the_tail_once_no_sample_waits():
    alpha = 0.02
    flips_after = torch.tensor([1, 1, 2, 2, 2, 3, 9, 12])  # steps each sample needs
    x = (0.5 - alpha * (flips_after - 0.5)).view(-1, 1, 1, 1)
    y = torch.zeros(8, dtype=torch.int64)
    sizes = []
    model = Threshold()
    model.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    result = attack(model, x, y, eps=1.0, alpha=alpha, steps=20, batch_size=8)
    assert result.iterations.tolist() == flips_after.tolist()  # the same results ...
    # 3 left after step 2: 4 slots; 2 left after step 3: 2 slots; 1 left after step 9: 1 slot
    assert sizes[1:] == [8, 8, 8, 4, 2, 2, 2, 2, 2, 2, 1, 1, 1]  # ... from batches halved as they empty


def test_slots_give_the_results_of_one_batch():
    model, (x, y) = tiny_model(), tiny_batch(40)
    whole = attack(model, x, y, eps=4 / 255, alpha=1 / 255, steps=6)
    slotted = attack(model, x, y, eps=4 / 255, alpha=1 / 255, steps=6, batch_size=7)
    assert torch.equal(whole.iterations, slotted.iterations) and torch.equal(whole.success, slotted.success)
    assert (whole.adversarial - slotted.adversarial).abs().max() <= 1e-6


def test_targeted_success_means_reaching_the_target():
    x = torch.zeros(2, 1, 1, 1)
    y = torch.zeros(2, dtype=torch.int64)
    target = torch.tensor([2, 0])  # the second sample's target is its label
    short = attack(Ladder(), x, y, eps=1.0, alpha=0.1, steps=6, target=target)
    assert short.pred_after[0] == 1 and not short.success[0]  # left its class, but did not reach the target
    assert short.iterations[0] == -1
    long = attack(Ladder(), x, y, eps=1.0, alpha=0.1, steps=10, target=target)
    assert long.pred_after[0] == 2 and long.success[0] and long.iterations[0] == 7
    assert long.skipped.tolist() == [False, True] and not long.success[1] and long.iterations[1] == -1
    assert torch.equal(long.adversarial[1], x[1])  # a skipped sample is not attacked
    assert summarize(long)["skipped"] == 1 and summarize(long)["attacked"] == 1


def test_target_rules():
    model, (x, y) = tiny_model(), tiny_batch()
    picks = [
        attack(model, x, y, eps=0.0, alpha=0.0, steps=1, target="random", generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    assert torch.equal(picks[0].targets, picks[1].targets) and not (picks[0].targets == y).any()
    assert len(picks[0].targets.unique()) > 5
    logits = model(x).detach()
    least = attack(model, x, y, eps=0.0, alpha=0.0, steps=1, target="least-likely").targets
    assert not (least == y).any()
    assert torch.equal(
        logits.gather(1, least[:, None]).squeeze(1), logits.scatter(1, y[:, None], math.inf).min(1).values
    )
    fixed = attack(model, x, y, eps=2 / 255, steps=2, target=3)
    assert torch.equal(fixed.targets, torch.full_like(y, 3)) and torch.equal(fixed.skipped, y == 3)


@pytest.mark.parametrize("method", ["fgsm", "bim", "pgd", "mifgsm"])
@pytest.mark.parametrize("target", [None, "random"])
def test_examples_stay_in_the_box_and_the_ball(method, target):
    model, (x, y) = tiny_model(), tiny_batch()
    eps = 6 / 255
    result = attack(model, x, y, method=method, eps=eps, early_stop=False, target=target)
    adv = result.adversarial
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.shape == x.shape and adv.dtype == x.dtype and not adv.requires_grad


def test_modes_statistics_and_gradients_are_left_as_found():
    model = nn.Sequential(tiny_model(), nn.Dropout(0.5))
    model.train()
    model[0][1].eval()  # a frozen BatchNorm inside a training model
    before = {name: m.training for name, m in model.named_modules()}
    statistics = model[0][1].running_mean.clone()
    seen = []
    model[0][0].register_forward_hook(lambda module, args, out: seen.append(module.training))
    x, y = tiny_batch()
    attack(model, x, y, method="pgd", eps=4 / 255, steps=3)
    assert seen and not any(seen)  # attacked in eval mode
    assert {name: m.training for name, m in model.named_modules()} == before
    assert torch.equal(model[0][1].running_mean, statistics)
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    attack(model, x, y, eps=4 / 255, steps=2)
    assert not model.training


def _hand_made() -> AttackResult:
    def t(*values, dtype=torch.int64):
        return torch.tensor(values, dtype=dtype)

    # samples: 0-2 correct then fooled after 1, 3 and (never) steps; 3 wrong from the start; 4 skipped
    return AttackResult(
        adversarial=torch.zeros(5, 1),
        labels=t(0, 1, 2, 3, 4),
        targets=t(5, 5, 5, 5, 4),
        success=t(True, True, False, True, False, dtype=torch.bool),
        iterations=t(1, 3, -1, 0, -1),
        prob_before=t(0.9, 0.8, 0.7, 0.1, 0.6, dtype=torch.float32),
        prob_after=t(0.1, 0.2, 0.6, 0.0, 0.6, dtype=torch.float32),
        pred_before=t(0, 1, 2, 5, 4),
        pred_after=t(5, 5, 2, 5, 4),
        skipped=t(False, False, False, False, True, dtype=torch.bool),
    )


def test_metrics_on_a_hand_made_result():
    summary = summarize(_hand_made())
    assert summary == pytest.approx(
        {
            "samples": 5,
            "attacked": 3,
            "skipped": 1,
            "successes": 2,
            "clean_accuracy": 4 / 5,
            "robust_accuracy": 2 / 5,
            "success_rate": 2 / 3,
            "mean_iterations": 2.0,
            "mean_confidence_drop": (0.8 + 0.6 + 0.1) / 3,
        }
    )
    joined = AttackResult.cat([_hand_made(), _hand_made()])
    assert len(joined) == 10 and success_rate(joined) == pytest.approx(2 / 3)
    nothing = AttackResult.cat([_hand_made()])
    nothing = AttackResult(**{**nothing.__dict__, "skipped": torch.ones(5, dtype=torch.bool)})
    assert summarize(nothing)["success_rate"] is None and summarize(nothing)["mean_iterations"] is None


class Probabilities(nn.Module):
    def forward(self, x):
        return torch.softmax(x.flatten(1)[:, :3], 1)


class Pair(nn.Module):
    def forward(self, x):
        z = x.flatten(1)[:, :3]
        return z, z


class Score(nn.Module):
    def forward(self, x):
        return x.flatten(1).sum(1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eps": -1 / 255}, "eps must be in \\[0, 1\\]"),
        ({"eps": math.nan}, "eps must be in \\[0, 1\\]"),
        ({"eps": 300 / 255}, "eps must be in \\[0, 1\\] \\(pixel units"),
        ({"alpha": -0.1}, "alpha must be in \\[0, 1\\]"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"method": "cw"}, "unknown attack 'cw'"),
        ({"method": "fgsm", "steps": 5}, "fgsm takes a single step"),
        ({"x": "normalised"}, "the model must own its normalisation"),
        ({"y": "float"}, "labels must be an int64 tensor"),
        ({"y": "out of range"}, "labels span 0..12, outside 0..9"),
        ({"target": 10}, "targets span 10..10, outside 0..9"),
        ({"target": "most-likely"}, "unknown target 'most-likely'"),
        ({"model": Probabilities()}, "the model returns probabilities"),
        ({"model": Pair()}, "the model must return a logits tensor, got tuple"),
        ({"model": Score()}, r"the model must return logits of shape \(50, classes\)"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_input_is_a_clear_error(change, message):
    model, (x, y) = tiny_model(), tiny_batch()
    if change.get("x") == "normalised":
        change["x"] = (x - 0.5) / 0.25
    if change.get("y") == "float":
        change["y"] = y.float()
    elif change.get("y") == "out of range":
        change["y"] = y.clone().index_fill_(0, torch.tensor([0]), 12)
    arguments = {"model": model, "x": x, "y": y, "eps": 4 / 255, **change}
    with pytest.raises(AttackError, match=message):
        attack(arguments.pop("model"), arguments.pop("x"), arguments.pop("y"), **arguments)


def test_attack_arrays_scales_uint8_images(cifar10_test, resnet20):
    data = cifar10_test.subset(32)
    result = attack_arrays(resnet20, data, method="fgsm", eps=0.0, early_stop=False, batch_size=16)
    assert result.adversarial.device.type == "cpu"
    assert torch.equal(result.adversarial, data.images.float() / 255)
    assert torch.equal(result.pred_before, result.pred_after)


def test_resnet20_on_real_cifar10(cifar10_test, resnet20):
    """The shared ResNet-20 (91.73%) falls to PGD-10 at 8/255; FGSM's success rises with ε."""
    data = cifar10_test.subset(200, seed=1)
    pgd = attack_arrays(
        resnet20, data, method="pgd", eps=8 / 255, alpha=2 / 255, steps=10, generator=torch.Generator().manual_seed(0)
    )
    assert summarize(pgd)["clean_accuracy"] > 0.85 and robust_accuracy(pgd) < 0.05
    rates = [success_rate(attack_arrays(resnet20, data, method="fgsm", eps=e / 255)) for e in (0.5, 2, 8)]
    assert rates == sorted(rates) and rates[0] < 0.5 < rates[-1]


def test_adversarial_step_loss():
    model, (x, y) = tiny_model(), tiny_batch()
    model.train()  # as inside fit: the adversarial batch is made with BatchNorm on batch statistics
    loss_fn = AdversarialStepLoss("fgsm", eps=8 / 255, w_clean=0.2, w_adv=0.8)
    loss, logits = loss_fn(model, x, y)
    adversarial = perturb(model, x, y, make_attack("fgsm", eps=8 / 255))
    assert (adversarial - x).abs().max() <= 8 / 255 + 1e-6 and not torch.equal(adversarial, x)
    expected = 0.2 * F.cross_entropy(model(x), y) + 0.8 * F.cross_entropy(model(adversarial), y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(logits, model(adversarial))  # train accuracy is measured on the adversarial batch
    assert model.training and all(p.grad is None for p in model.parameters())
    assert AdversarialStepLoss("fgsm-rs", eps=8 / 255).step_size == pytest.approx(10 / 255)
    assert AdversarialStepLoss("pgd", eps=8 / 255, steps=10).step_size == pytest.approx(2 / 255)
    objectives = {
        AdversarialStepLoss(method, eps=eps, w_clean=w, w_adv=1 - w).objective
        for method in ("fgsm", "fgsm-rs")
        for eps in (4 / 255, 8 / 255)
        for w in (0.5, 0.2)
    }
    assert len(objectives) == 8  # every setting names a different model in the classifier cache
    for bad, message in [
        ({"method": "deepfool"}, "unknown attack 'deepfool'; known: fgsm, fgsm-rs"),
        ({"eps": -0.1}, "eps must be in \\[0, 1\\]"),
        ({"steps": 3}, "fgsm-rs takes a single step"),
        ({"w_adv": 0.0}, "weights must be w_clean >= 0 and w_adv > 0"),
    ]:
        with pytest.raises(AttackError, match=message):
            AdversarialStepLoss(**{"method": "fgsm-rs", "eps": 8 / 255, **bad})
    with pytest.raises(AttackError, match="must own its normalisation"):
        loss_fn(model, x * 2 - 1, y)
