"""APGD-CE, APGD-DLR and APGD-T: the checkpoint schedule and step-size rule per sample, bounds, errors, adversarial
training, and agreement with torchattacks' APGD and APGDT."""

import pytest
import torch
from torch import nn

from dlapps.attacks import AdversarialStepLoss, attack, attack_arrays, make_attack, perturb, robust_accuracy
from dlapps.attacks.apgd import APGD, checkpoint_intervals
from dlapps.attacks.loop import forward
from dlapps.errors import AttackError
from test_attacks import tiny_batch, tiny_model

torchattacks = pytest.importorskip("torchattacks")  # a dev-only dependency

METHODS = ["apgd-ce", "apgd-dlr", "apgd-t"]


def test_checkpoints_follow_the_paper():
    """p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): at 100 steps, whole steps exactly."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    intervals = checkpoint_intervals(100)
    checkpoints = [step for step, length in enumerate(intervals) if length]
    assert checkpoints == [round(100 * q) for q in p[1:]] == [22, 41, 57, 70, 80, 87, 93, 99]
    assert [intervals[c] for c in checkpoints] == [22, 19, 16, 13, 10, 7, 6, 6]  # steps since the last checkpoint
    assert [step for step, length in enumerate(checkpoint_intervals(10)) if length] == list(range(2, 11))


class Ramp(nn.Module):
    """Two classes, one pixel ``z``; class 0 always wins. The cross-entropy of class 0 grows with ``min(z, 0.8)``:
    a sample below 0.8 climbs at every step, one above sits on a plateau (zero gradient, a loss that never moves)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1)[:, :1].clamp(max=0.8)
        return torch.cat([torch.zeros_like(z), 4 * z - 8], 1)


def _steps(model: nn.Module, attack: APGD, x: torch.Tensor, y: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Step ``attack`` as the loop does, from the input itself (not a random start): the state before each step."""
    state = {"x": x, "goal": y, "taken": torch.zeros_like(y), "clean": model(x).detach()}
    state |= attack.start(state, 0, None) | {"adv": x}
    seen = []
    for _ in range(attack.steps):
        seen.append({key: value.clone() for key, value in state.items()})
        adv, logits = forward(model, state["adv"], True)
        state |= attack.step(adv, logits, state, False, None)
        state["taken"] = state["taken"] + 1
    return seen


def test_step_size_halves_at_checkpoints_only_where_the_loss_stops_rising():
    """In one batch: a sample whose loss rises at every step keeps η; one on a plateau halves it at each
    checkpoint (condition 1: at most 75% of the steps increased the loss), and restarts from its best point."""
    alpha = 0.002
    x = torch.tensor([0.2, 0.9]).view(2, 1, 1, 1)  # climbing, plateau
    apgd = make_attack("apgd-ce", eps=0.5, alpha=alpha, steps=100)
    seen = _steps(Ramp(), apgd, x, torch.zeros(2, dtype=torch.int64))
    eta = torch.stack([s["eta"] for s in seen])  # (steps, 2): η before each step
    halvings = torch.tensor([sum(1 for c in (22, 41, 57, 70, 80, 87, 93, 99) if c < t) for t in range(100)])
    assert torch.equal(eta[:, 0], torch.full((100,), alpha))
    assert torch.equal(eta[:, 1], alpha / 2.0**halvings)
    climbed = seen[-1]["adv"].flatten() - x.flatten()
    assert climbed[0] == pytest.approx(99 * alpha, rel=1e-3) and climbed[1] == 0  # momentum keeps a steady pace
    assert torch.equal(seen[-1]["increases"], torch.tensor([98 - 93, 0]))  # counted since the last checkpoint


def test_checkpoint_conditions_on_a_hand_made_state():
    """At step 41 (19 steps since the checkpoint at 22): condition 1 halves η at ≤ 14.25 increases; condition 2
    halves it if η was not halved at step 22 and the best loss has not risen since; a halved sample steps from its
    best point and that point's gradient."""
    x, y = torch.full((6, 1, 1, 1), 0.5), torch.zeros(6, dtype=torch.int64)
    model, apgd = Ramp(), make_attack("apgd-ce", eps=0.5, alpha=0.1, steps=100)
    state = {"x": x, "goal": y, "taken": torch.full_like(y, 41), "clean": model(x).detach()}
    state |= apgd.start(state, 0, None)
    adv, logits = forward(model, x, True)
    loss = apgd.loss(logits, state, False).detach()
    best = torch.full_like(x, 0.3)
    state |= {
        "adv": x,
        "previous": x,
        "best": best,
        "best_gradient": torch.full_like(x, -1.0),  # the step from the best point goes down, not up
        "best_loss": loss + 1,  # the best point is better than this one
        "last_loss": loss,
        "increases": torch.tensor([14, 15, 19, 19, 19, 14]),
        "halved": torch.tensor([True, True, True, False, False, False]),
        "checked_loss": (loss + 1) - torch.tensor([0, 0, 0, 0, 0.5, 0.5]),  # the best rose since: samples 4, 5
        "eta": torch.full((6,), 0.1),
    }
    stepped = apgd.step(adv, logits, state, False, None)
    halved = torch.tensor([True, False, False, True, False, True])
    assert torch.equal(stepped["halved"], halved)
    assert torch.equal(stepped["eta"], torch.where(halved, 0.05, 0.1))
    assert torch.equal(stepped["previous"].flatten(), torch.where(halved, 0.3, 0.5))
    # from x_max, η/2 down (its gradient), with momentum; the others η up from where they are
    expected = torch.where(halved, 0.3 - 0.75 * 0.05 + 0.25 * (0.3 - 0.5), 0.5 + 0.75 * 0.1)
    assert torch.allclose(stepped["adv"].flatten(), expected)
    assert torch.equal(stepped["increases"], torch.zeros(6, dtype=torch.int64))
    assert torch.equal(stepped["checked_loss"], loss + 1)


class FromInput(APGD):
    """APGD-CE starting from the input instead of a random point, so that runs are deterministic."""

    def start(self, state, run, generator):
        return super().start(state, run, generator) | {"adv": state["x"]}


def test_slots_at_different_steps_give_the_results_of_one_batch():
    """Samples refilled into a batch are at other steps than their neighbours: their checkpoints are their own.
    (In float64, so that the rounding of convolutions, which varies with the batch size, cannot tip a comparison of
    losses.)"""
    model, (x, _) = tiny_model().double(), tiny_batch(60)
    x = x.double()
    y = model(x).argmax(1)
    whole = attack(model, x, y, FromInput(eps=6 / 255, steps=30))
    for batch_size in (3, 7):
        slotted = attack(model, x, y, FromInput(eps=6 / 255, steps=30), batch_size=batch_size)
        assert torch.equal(whole.iterations, slotted.iterations) and torch.equal(whole.success, slotted.success)
        assert (whole.adversarial - slotted.adversarial).abs().max() <= 1e-6
    assert 10 < whole.success.sum() < 50  # some fooled (at once or later), some never


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("threat", ["linf", "l2"])
def test_examples_stay_in_the_ball_and_the_box(method, threat):
    model, (x, y) = tiny_model(), tiny_batch()
    eps = 6 / 255 if threat == "linf" else 0.3
    for early_stop in (True, False):
        result = attack(model, x, y, method, eps=eps, threat=threat, steps=10, early_stop=early_stop)
        adv = result.adversarial
        assert adv.min() >= 0 and adv.max() <= 1 and adv.shape == x.shape and not adv.requires_grad
        distance = (adv - x).flatten(1).abs().amax(1) if threat == "linf" else (adv - x).flatten(1).norm(dim=1)
        assert distance.max() <= eps + 1e-6
        assert torch.equal(result.success, result.pred_after != y)  # untargeted: success is misclassification


def test_without_early_stop_an_example_is_the_first_misclassified_point():
    model, (x, _) = tiny_model(), tiny_batch(200)
    y = model(x).argmax(1)  # all correct: both attack every sample, from the same random starts
    settings = {"eps": 8 / 255, "steps": 20, "generator": torch.Generator().manual_seed(0)}
    stopped = attack(model, x, y, "apgd-ce", **settings)
    settings["generator"] = torch.Generator().manual_seed(0)
    full = attack(model, x, y, "apgd-ce", early_stop=False, **settings)
    assert torch.equal(stopped.success, full.success) and torch.equal(stopped.iterations, full.iterations)
    assert torch.equal(stopped.adversarial[stopped.success], full.adversarial[full.success])
    assert torch.equal(full.pred_after, model(full.adversarial).argmax(1))  # the logits are the example's


@pytest.mark.parametrize(
    ("method", "change", "message"),
    [
        ("apgd-ce", {"threat": "l1"}, "unknown threat model 'l1'"),
        ("apgd-ce", {"eps": 2.0}, "eps must be in \\[0, 1\\]"),
        ("apgd-t", {"eps": -0.1, "threat": "l2"}, "eps must be in \\[0, inf\\]"),
        ("apgd-ce", {"rho": 1.5}, "rho must be in \\[0, 1\\]"),
        ("apgd-t", {"n_target_classes": 0}, "n_target_classes must be a positive integer"),
        ("apgd-t", {"target": 3}, "apgd-t takes no target: it is untargeted"),
        ("apgd-ce", {"target": "random"}, "apgd-ce takes no target: it is untargeted"),
        ("apgd-ce", {"decay": 0.9}, "apgd-ce: got an unexpected keyword argument 'decay'"),
    ],
)
def test_bad_input_is_a_clear_error(method, change, message):
    model, (x, y) = tiny_model(), tiny_batch()
    with pytest.raises(AttackError, match=message):
        attack(model, x, y, method, **{"eps": 4 / 255, "steps": 2, **change})


def test_too_few_classes_for_the_dlr_loss():
    x, y = torch.rand(4, 1, 1, 1), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(AttackError, match="apgd-dlr needs at least 3 classes; the model has 2"):
        attack(Ramp(), x, y, "apgd-dlr", eps=0.1, steps=2)


def test_apgd_t_takes_the_next_classes_of_the_clean_logits_as_targets():
    model, (x, y) = tiny_model(), tiny_batch(20)
    clean = model(x).detach()
    apgd = make_attack("apgd-t", eps=4 / 255, n_target_classes=3, restarts=2)
    assert apgd.runs(10) == 6 and apgd.runs(3) == 4  # at most the classes other than the label
    others = clean.scatter(1, y[:, None], -torch.inf).argsort(1, descending=True)
    state = {"x": x, "goal": y, "taken": torch.zeros_like(y), "clean": clean}
    for run in range(6):
        assert torch.equal(apgd.start(state, run, None)["target"], others[:, run // 2])  # restarts of a target first


@pytest.mark.parametrize("method", METHODS)
def test_adversarial_training_batches(method):
    model, (x, y) = tiny_model(), tiny_batch()
    model.train()
    adversarial = perturb(model, x, y, make_attack(method, eps=8 / 255, steps=5))
    assert (adversarial - x).abs().max() <= 8 / 255 + 1e-6 and not torch.equal(adversarial, x)
    loss, _ = AdversarialStepLoss(method, eps=8 / 255, steps=5)(model, x, y)
    assert loss.isfinite() and model.training and all(p.grad is None for p in model.parameters())


def _reference(method: str, model: nn.Module, threat: str, eps: float, steps: int, targets: int = 9):
    norm = {"linf": "Linf", "l2": "L2"}[threat]
    if method == "apgd-t":
        return torchattacks.APGDT(model, norm=norm, eps=eps, steps=steps, n_classes=targets + 1)
    return torchattacks.APGD(model, norm=norm, eps=eps, steps=steps, loss=method.removeprefix("apgd-"))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("threat", "eps"), [("linf", 3 / 255), ("l2", 0.15)])
def test_agrees_with_torchattacks_sample_by_sample(method, threat, eps):
    """From other random starts, the same samples fall: the tiny model's robustness is decided by the samples.
    (APGD-T against 3 target classes, to keep it short.)"""
    model = tiny_model()
    x, _ = tiny_batch(400, seed=3)
    y = model(x).argmax(1)  # every sample starts correctly classified
    robust = model(_reference(method, model, threat, eps, 20, targets=3)(x, y)).argmax(1) == y
    own = {"n_target_classes": 3} if method == "apgd-t" else {}
    generator = torch.Generator().manual_seed(1)
    ours = attack(model, x, y, method, eps=eps, threat=threat, steps=20, generator=generator, **own)
    assert 0.1 < robust.float().mean() < 0.95  # neither none nor all
    assert (ours.success != robust).float().mean() >= 0.99  # success where torchattacks found no example


@pytest.mark.slow
def test_agrees_with_torchattacks_on_resnet20(cifar10_test, resnet20):
    """Robust accuracy within 2 points on 100 CIFAR-10 images, 20 steps, APGD-T towards 3 target classes
    (benchmarks/attack_speed.py compares 500 images at 100 steps)."""
    data = cifar10_test.subset(100, seed=2)
    x, y = data.images.float() / 255, data.labels
    for method, threat, eps in [("apgd-ce", "linf", 1 / 255), ("apgd-t", "l2", 0.1)]:
        robust = resnet20(_reference(method, resnet20, threat, eps, 20, targets=3)(x, y)).argmax(1) == y
        own = {"n_target_classes": 3} if method == "apgd-t" else {}
        ours = attack_arrays(resnet20, data, method, eps=eps, threat=threat, steps=20,
                             generator=torch.Generator().manual_seed(0), **own)  # fmt: skip
        assert 0.05 < robust.float().mean() < 0.6
        assert abs(robust_accuracy(ours) - robust.float().mean().item()) <= 0.02, (method, threat)
