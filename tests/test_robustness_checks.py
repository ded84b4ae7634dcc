"""The attack ensemble (each attack on what the ones before it left) and the checks that say whether a robust
accuracy can be believed: they flag a model that masks its gradients, and pass the published ResNet-20."""

import pytest
import torch
from torch import nn

from dlapps.attacks import (
    ATTACKS,
    PIXEL,
    attack_arrays,
    gradient_health,
    make_attack,
    run_ensemble,
    trust_checks,
)
from dlapps.attacks.trust import converged, falls_with_eps, no_gradient_masking, vanishes_at_large_eps
from dlapps.data import ImageArrays
from dlapps.errors import AttackError
from test_attacks import tiny_model


def tiny_arrays(n: int = 60, seed: int = 1) -> ImageArrays:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=generator)
    labels = tiny_model()(images.float() / 255).argmax(1)  # every image starts correctly classified ...
    labels[:5] = (labels[:5] + 1) % 10  # ... but five
    return ImageArrays(images, labels, tuple(str(c) for c in range(10)), "tiny")


class Quantised(nn.Module):
    """A model behind a rounding to 8-bit grey levels: the same predictions, a zero gradient everywhere. The
    textbook gradient masking (Athalye et al. 2018's "shattered gradients")."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 255) / 255)


def test_each_attack_of_an_ensemble_runs_on_what_the_ones_before_left():
    model, data = tiny_model(), tiny_arrays()
    chain = [
        make_attack("fgsm", eps=1 / 255),
        make_attack("bim", eps=2 / 255, steps=3),
        make_attack("pgd", eps=4 / 255, steps=5),
    ]
    found = run_ensemble(model, data, chain, seed=3)
    assert found.correct.sum() == len(data) - 5
    assert not (found.robust & ~found.correct).any()
    attacked = [s["attacked"] for s in found.stages]
    broke = [s["broke"] for s in found.stages]
    assert attacked[0] == len(data) - 5 and all(
        a - b == c for a, b, c in zip(attacked, broke, attacked[1:], strict=False)
    )
    assert (
        attacked[-1] - broke[-1] == found.robust.sum() and found.stages[-1]["robust_accuracy"] == found.robust_accuracy
    )
    assert sum(broke) > 0 and found.robust.any()  # a budget where some images fall and some stand
    # the last attack alone on the images that survived the others breaks exactly what the ensemble says it broke
    standing = torch.zeros(len(data), dtype=torch.bool)
    standing[found.correct.nonzero().flatten()] = True
    for i, each in enumerate(chain[:-1]):
        alone = attack_arrays(
            model, data.take(standing.nonzero().flatten()), each, generator=torch.Generator().manual_seed(3 + i)
        )
        standing[standing.clone()] = ~alone.success
    last = attack_arrays(
        model, data.take(standing.nonzero().flatten()), chain[-1], generator=torch.Generator().manual_seed(5)
    )
    assert int(last.success.sum()) == broke[-1]


def test_an_interrupted_ensemble_resumes_from_the_attacks_it_finished():
    model, data = tiny_model(), tiny_arrays()
    chain = [make_attack("bim", eps=2 / 255, steps=3), make_attack("pgd", eps=4 / 255, steps=5)]
    kept, computed = {}, []

    def memo(name, settings, compute):
        key = (name, repr(sorted(settings.items())))
        if key not in kept:
            computed.append(name)
            kept[key] = compute()
        return kept[key]

    first = run_ensemble(model, data, chain, memo=memo)
    del kept[next(k for k in kept if k[0] == "pgd")]  # as if the run had stopped during the second attack
    again = run_ensemble(model, data, chain, memo=memo)
    assert computed == ["bim", "pgd", "pgd"] and torch.equal(first.robust, again.robust)


def test_sanity_checks_from_their_numbers():
    assert falls_with_eps([("1/255", 0.5), ("2/255", 0.3), ("4/255", 0.305)]).flagged is False
    rising = falls_with_eps([("1/255", 0.5), ("2/255", 0.3), ("4/255", 0.4)])
    assert rising.flagged and "30.0% at 2/255, 40.0% at 4/255" in rising.evidence
    assert vanishes_at_large_eps("64/255", 0.2).flagged and not vanishes_at_large_eps("64/255", 0.0).flagged
    assert converged(0.40, 0.35, "more steps").flagged and not converged(0.40, 0.395, "more steps").flagged
    stages = [{"attack": "apgd-ce", "broke": 50}, {"attack": "square", "broke": 7}]
    assert no_gradient_masking(stages, 100).flagged and not no_gradient_masking(stages, 1000).flagged


def test_gradient_health_counts_zero_and_non_finite_gradients():
    model, data = tiny_model(), tiny_arrays(20)
    assert gradient_health(model, data) == {"images": 20, "zero": 0, "non_finite": 0, "differentiable": True}
    assert gradient_health(Quantised(model), data)["zero"] == 20

    class Detached(nn.Module):
        def forward(self, x):
            return model(x).detach()

    assert gradient_health(Detached(), data)["differentiable"] is False
    with pytest.raises(AttackError, match="has no gradient with respect to its input, so pgd cannot run"):
        attack_arrays(Detached(), data, "pgd", eps=4 / 255)


@pytest.mark.slow  # attacks on a real model
def test_a_model_that_masks_its_gradients_is_flagged_and_the_published_resnet20_is_not(resnet20, cifar10_test):
    data = cifar10_test.subset(40, seed=2)
    eps = 8 * PIXEL

    def checks(model):
        chain = [make_attack(name, eps=eps, steps=10 if ATTACKS[name].uses_gradient else 200)
                 for name in ("apgd-ce", "apgd-t", "square")]  # fmt: skip
        headline = run_ensemble(model, data, chain)
        pgd = attack_arrays(model, data, "pgd", eps=eps, steps=10, generator=torch.Generator().manual_seed(0))
        found = trust_checks(model, data, headline, [(4, headline.robust_accuracy), (8, headline.robust_accuracy)],
                             stronger=make_attack("apgd-ce", eps=eps, steps=20, restarts=2),
                             large=make_attack("apgd-ce", eps=64 * PIXEL, steps=10))  # fmt: skip
        return {c.check: c.flagged for c in found}, (pgd.pred_after == pgd.labels).double().mean().item()

    masked, masked_pgd = checks(Quantised(resnet20))
    assert masked_pgd > 0.5  # plain PGD reports a robust model ...
    assert masked["score-based attacks find nothing the gradient attacks missed"]  # ... that Square breaks
    assert masked["loss gradients are finite and non-zero"]
    plain, plain_pgd = checks(resnet20)
    assert plain_pgd < 0.1 and not any(plain.values()), plain
