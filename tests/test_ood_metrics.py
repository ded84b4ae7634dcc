"""OOD metrics: hand-computed cases (ties, the 95% boundary, the sign convention) and scikit-learn agreement."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from dlapps.ood.metrics import aupr_in, aupr_out, auroc, fpr_at_95_tpr, fpr_at_tpr, ood_metrics


def test_hand_computed_case():
    # Ranked: 0.9 ID, 0.85 OOD, 0.8 ID, 0.7 ID, 0.6 ID, 0.5 OOD, 0.4 OOD.
    id_scores, ood_scores = [0.9, 0.8, 0.7, 0.6], [0.85, 0.5, 0.4]
    assert auroc(id_scores, ood_scores) == pytest.approx(9 / 12)  # ID above OOD in 9 of 12 pairs
    assert aupr_in(id_scores, ood_scores) == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 5) / 4)
    assert aupr_out(id_scores, ood_scores) == pytest.approx((1 + 1 + 3 / 6) / 3)
    # Keeping >= 95% of 4 ID images means keeping all: threshold 0.6 also keeps the OOD 0.85.
    assert fpr_at_95_tpr(id_scores, ood_scores) == pytest.approx(1 / 3)


def test_ties_count_half_and_are_kept_together():
    assert auroc([1, 1], [1, 0]) == pytest.approx(0.75)  # two tied pairs count 1/2, two won pairs 1
    assert fpr_at_95_tpr([1, 1], [1, 0]) == pytest.approx(0.5)  # the OOD 1 is tied with the ID threshold
    # 19 of 20 ID images must be kept; the 19th-highest ID score (0) is tied with another ID 0 and an OOD 0.
    id_scores = [0, 0, *range(1, 19)]
    assert fpr_at_95_tpr(id_scores, [0, -1]) == pytest.approx(0.5)
    assert fpr_at_95_tpr(id_scores, [-0.5, -1]) == 0.0


def test_fpr_at_exactly_95_percent_uses_no_interpolation():
    id_scores = list(range(1, 21))  # keeping 19 of 20 is exactly 95%: threshold 2
    assert fpr_at_95_tpr(id_scores, [0.5, 1.5, 2.5]) == pytest.approx(1 / 3)
    assert fpr_at_tpr(id_scores, [0.5, 1.5, 2.5], tpr=1.0) == pytest.approx(2 / 3)
    assert fpr_at_95_tpr(list(range(1, 22)), [1.5, 2.5]) == pytest.approx(0.5)  # 20 of 21: threshold 2


def test_sign_convention():
    id_scores, ood_scores = torch.tensor([3.0, 2.0, 0.5]), torch.tensor([1.0, 0.0])
    assert auroc(id_scores, ood_scores) == pytest.approx(5 / 6)
    assert auroc(ood_scores, id_scores) == pytest.approx(1 / 6)  # roles swapped
    assert auroc(-id_scores, -ood_scores) == pytest.approx(1 / 6)  # an OOD-ness score has the wrong sign
    assert aupr_out(id_scores, ood_scores) == pytest.approx(aupr_in(-ood_scores, -id_scores))


def test_unbounded_scores_are_not_squashed():
    # Through a sigmoid, these would all be 1.0 in float32 and tie; raw, they separate perfectly.
    id_scores, ood_scores = torch.tensor([1e6 + 2, 1e6 + 3, 900.0]), torch.tensor([1e6 + 1, 800.0])
    assert auroc(id_scores, ood_scores) == pytest.approx(5 / 6)
    assert auroc([2000.0, 1000.0], [900.0]) == 1.0
    assert fpr_at_95_tpr([2000.0, 1000.0], [900.0]) == 0.0


def _fpr_brute_force(id_scores: np.ndarray, ood_scores: np.ndarray, level: float = 0.95) -> float:
    """FPR at the highest threshold keeping at least ``level`` of ID, trying every candidate threshold."""
    thresholds = np.unique(np.concatenate([id_scores, ood_scores]))[::-1]
    for t in thresholds:
        if np.mean(id_scores >= t) >= level:
            return float(np.mean(ood_scores >= t))
    raise AssertionError("unreachable")


@pytest.mark.parametrize("seed", range(5))
def test_agree_with_scikit_learn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    id_scores = rng.integers(0, 30, 200) + 5.0  # few distinct values: many ties
    ood_scores = rng.integers(0, 30, 150).astype(float)
    labels = np.r_[np.ones(200), np.zeros(150)]
    scores = np.r_[id_scores, ood_scores]
    metrics = ood_metrics(torch.from_numpy(id_scores), torch.from_numpy(ood_scores))
    assert metrics["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert metrics["aupr_in"] == pytest.approx(average_precision_score(labels, scores))
    assert metrics["aupr_out"] == pytest.approx(average_precision_score(1 - labels, -scores))
    assert metrics["fpr95"] == pytest.approx(_fpr_brute_force(id_scores, ood_scores))
    pairs = (id_scores[:, None] > ood_scores[None]).mean() + 0.5 * (id_scores[:, None] == ood_scores[None]).mean()
    assert metrics["auroc"] == pytest.approx(pairs)


def test_bad_input():
    with pytest.raises(ValueError, match="no OOD scores"):
        auroc([1.0, 2.0], [])
    with pytest.raises(ValueError, match="no ID scores"):
        fpr_at_95_tpr(torch.tensor([]), [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        aupr_in([1.0, float("nan")], [0.0])
    with pytest.raises(ValueError, match="tpr must be in"):
        fpr_at_tpr([1.0], [0.0], tpr=95)
