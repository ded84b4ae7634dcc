"""Percentile bootstrap intervals: against scipy.stats.bootstrap and scikit-learn, batched against one resample at
a time, seeded, chunked, and paired."""

import json
from functools import partial

import numpy as np
import pytest
import torch
from scipy.stats import bootstrap
from sklearn.metrics import roc_auc_score

from dlapps.evaluate import (
    batched_accuracy,
    batched_auroc,
    batched_expected_calibration_error,
    bootstrap_ci,
    confidence_and_correctness,
    expected_calibration_error,
    paired_difference_ci,
    within_noise,
)


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def _correct(n=500, accuracy=0.8, seed=0):
    return (torch.rand(n, generator=_seeded(seed)) < accuracy).double()


def _scores(n_id=300, n_ood=200, rounding=None):
    id_scores = torch.randn(n_id, generator=_seeded(1)) + 1
    ood_scores = torch.randn(n_ood, generator=_seeded(2))
    if rounding:  # many ties within and across the two sets
        id_scores, ood_scores = (id_scores * rounding).round(), (ood_scores * rounding).round()
    return id_scores, ood_scores


def _sklearn_auroc(id_scores, ood_scores) -> float:
    labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    return roc_auc_score(labels, np.r_[id_scores.numpy(), ood_scores.numpy()])


def test_accuracy_interval_agrees_with_scipy_percentile_bootstrap():
    correct = _correct()
    ours = bootstrap_ci(batched_accuracy, correct, resamples=4000)
    reference = bootstrap((correct.numpy(),), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(0)).confidence_interval  # fmt: skip
    assert ours.estimate == correct.mean().item()
    assert ours.low == pytest.approx(reference.low, abs=0.01) and ours.high == pytest.approx(reference.high, abs=0.01)
    wide = bootstrap_ci(batched_accuracy, correct, resamples=4000, level=0.99)
    assert wide.low < ours.low and wide.high > ours.high


@pytest.mark.parametrize("rounding", [None, 2])
def test_auroc_agrees_with_scikit_learn_on_the_data_and_on_each_resample(rounding):
    id_scores, ood_scores = _scores(rounding=rounding)
    interval = bootstrap_ci(batched_auroc, id_scores, ood_scores, resamples=200)
    assert interval.estimate == pytest.approx(_sklearn_auroc(id_scores, ood_scores), abs=1e-12)
    id_index = torch.randint(300, (5, 300), generator=_seeded(3))
    ood_index = torch.randint(200, (5, 200), generator=_seeded(4))
    batched = batched_auroc(id_scores[id_index], ood_scores[ood_index])
    expected = [_sklearn_auroc(id_scores[i], ood_scores[o]) for i, o in zip(id_index, ood_index, strict=True)]
    assert batched.tolist() == pytest.approx(expected, abs=1e-12)


def test_auroc_interval_has_the_width_of_the_hanley_mcneil_standard_error():
    id_scores, ood_scores = _scores(2000, 2000)
    interval = bootstrap_ci(batched_auroc, id_scores, ood_scores, resamples=1000)
    a, n_id, n_ood = interval.estimate, 2000, 2000
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = np.sqrt((a * (1 - a) + (n_id - 1) * (q1 - a * a) + (n_ood - 1) * (q2 - a * a)) / (n_id * n_ood))
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_batched_ece_equals_the_ece_of_each_resample_exactly():
    generator = _seeded(5)
    logits = 2 * torch.randn(400, 6, generator=generator)
    labels = torch.randint(0, 6, (400,), generator=generator)
    probs = logits.softmax(1)
    confidence, correct = confidence_and_correctness(probs, labels)
    index = torch.randint(400, (50, 400), generator=generator)
    for bins in (15, 7):
        batched = batched_expected_calibration_error(confidence[index], correct[index], bins)
        assert batched.tolist() == [expected_calibration_error(probs[i], labels[i], bins) for i in index]
    interval = bootstrap_ci(partial(batched_expected_calibration_error, bins=7), (confidence, correct))
    assert interval.estimate == expected_calibration_error(probs, labels, 7)


def test_seeded_and_independent_of_chunking():
    id_scores, ood_scores = _scores()
    reference = bootstrap_ci(batched_auroc, id_scores, ood_scores, resamples=300, generator=_seeded(7))
    assert bootstrap_ci(batched_auroc, id_scores, ood_scores, resamples=300, generator=_seeded(7)) == reference
    assert bootstrap_ci(batched_auroc, id_scores, ood_scores, resamples=300, generator=_seeded(8)) != reference
    chunked = bootstrap_ci(
        batched_auroc, id_scores, ood_scores, resamples=300, generator=_seeded(7), max_elements=7 * 500 + 1
    )
    assert chunked == reference
    assert bootstrap_ci(batched_accuracy, _correct()) == bootstrap_ci(batched_accuracy, _correct())  # default seed


def test_paired_difference():
    correct = _correct()
    same = paired_difference_ci(batched_accuracy, correct, correct)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0) and within_noise(same)
    better = torch.maximum(correct, _correct(accuracy=0.3, seed=9))  # right wherever the first is, and more
    gain = paired_difference_ci(batched_accuracy, better, correct)
    assert gain.estimate == pytest.approx((better - correct).mean().item()) and gain.low > 0 and not within_noise(gain)
    unpaired = bootstrap_ci(lambda a, b: batched_accuracy(a) - batched_accuracy(b), better, correct)
    assert gain.high - gain.low < unpaired.high - unpaired.low  # pairing cancels what the two share
    probs, labels = torch.rand(500, 3, generator=_seeded(10)).softmax(1), torch.randint(0, 3, (500,))
    sample = confidence_and_correctness(probs, labels)
    assert paired_difference_ci(batched_expected_calibration_error, sample, sample).high == 0.0  # tuple samples


def test_record_and_errors():
    interval = bootstrap_ci(batched_accuracy, _correct(), resamples=100)
    record = json.loads(json.dumps(interval.to_record()))
    assert record.keys() == {"estimate", "low", "high", "level", "resamples"} and record["resamples"] == 100
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(batched_accuracy, _correct(), level=1.0)
    with pytest.raises(ValueError, match="length"):
        bootstrap_ci(batched_expected_calibration_error, (torch.rand(5), torch.ones(4)))
