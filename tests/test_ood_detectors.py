"""Detectors on the shared ResNet-20 and real CIFAR data: shapes, ranking, ODIN vs MSP, fitting rules, hooks."""

import numpy as np
import pytest
import torch
from sklearn.covariance import EmpiricalCovariance

from dlapps.data import ResidentLoader
from dlapps.data.ood import OodRequest, load_ood_set, noise
from dlapps.errors import ConfigError, DataError
from dlapps.models import create_model
from dlapps.models.hooks import capture, find_head
from dlapps.ood import (
    DETECTORS,
    MSP,
    ODIN,
    Mahalanobis,
    NotFittedError,
    auroc,
    create_detector,
    evaluate_detectors,
    fit_detectors,
    score_detectors,
)
from dlapps.ood.knn import knn_score
from dlapps.ood.mahalanobis import class_means_and_precision, mahalanobis_score
from dlapps.ood.react import percentile
from dlapps.ood.vim import principal_dim


@pytest.fixture(scope="module")
def split(cifar10_test):
    """Disjoint CIFAR-10 test images: 300 to fit detectors on, 200 to score."""
    mixed = cifar10_test.subset(500, seed=1)
    return mixed.take(torch.arange(300)), mixed.take(torch.arange(300, 500))


@pytest.fixture(scope="module")
def fitted(resnet20, split):
    detectors = {name: create_detector(name, **({"k": 10} if name == "knn" else {})) for name in DETECTORS}
    fit_detectors(detectors, resnet20, split[0])
    return detectors


@pytest.fixture(scope="module")
def scored(fitted, split):
    return score_detectors(fitted, split[1]), score_detectors(fitted, noise("gaussian", 200, seed=5))


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_detector_scores_finite_and_ranks_noise_below_id(name, scored):
    id_scored, noise_scored = scored
    id_scores, noise_scores = id_scored.scores[name], noise_scored.scores[name]
    assert id_scores.shape == (200,) and noise_scores.shape == (200,)
    assert torch.isfinite(id_scores).all() and torch.isfinite(noise_scores).all()
    # higher = more in-distribution; NAC, with its untuned defaults and 300 fitting images, only just
    assert auroc(id_scores, noise_scores) > (0.6 if name == "nac" else 0.75)
    assert id_scored.accuracy() > 0.85


def test_score_one_batch_equals_scoring_the_dataset(fitted, split, scored, resnet20):
    x = split[1].images[:16].float() / 255
    for name, detector in fitted.items():
        assert torch.allclose(detector.score(x).cpu().double(), scored[0].scores[name][:16].double(), atol=1e-6)
    # Fitting alone, from (images, labels) batches, gives the same statistics as the shared pass over arrays.
    alone = Mahalanobis().fit(resnet20, ResidentLoader(split[0], batch_size=128))
    assert torch.allclose(alone.score(x), fitted["mahalanobis"].score(x))


def test_odin_without_temperature_and_perturbation_is_msp(resnet20, split):
    x = split[1].images[:100].float() / 255
    msp = MSP().fit(resnet20).score(x)
    odin = ODIN(temperature=1.0, epsilon=0.0).fit(resnet20).score(x)
    assert torch.equal(odin, msp) and torch.equal(odin.argsort(), msp.argsort())
    perturbed = ODIN(temperature=1.0, epsilon=0.002).fit(resnet20).score(x)
    assert not torch.equal(perturbed, msp) and (perturbed >= msp - 1e-3).float().mean() > 0.9  # nudged up
    assert all(p.grad is None for p in resnet20.parameters())  # input gradients only


def test_msp_auroc_of_the_shared_resnet20_is_in_the_literature_range(resnet20, cifar10_test, data_root):
    near = load_ood_set("cifar100", OodRequest(root=data_root, size=1000, seed=0))
    detectors = {"msp": MSP()}
    fit_detectors(detectors, resnet20, None)
    id_scores = score_detectors(detectors, cifar10_test.subset(1000, seed=0)).scores["msp"]
    ood_scores = score_detectors(detectors, near).scores["msp"]
    assert 0.85 <= auroc(id_scores, ood_scores) <= 0.89


def test_fitting_rules(resnet20, split):
    x = split[1].images[:4].float() / 255
    with pytest.raises(NotFittedError, match="MSP is not fitted: call fit\\(model\\) before score"):
        MSP().score(x)
    with pytest.raises(NotFittedError, match="Mahalanobis is not fitted: call fit\\(model, id_train_data\\)"):
        Mahalanobis().score(x)
    with pytest.raises(NotFittedError, match="Mahalanobis needs in-distribution statistics"):
        Mahalanobis().fit(resnet20)
    with pytest.raises(DataError, match="the set is empty"):
        Mahalanobis().fit(resnet20, split[0].take(torch.arange(0)))
    with pytest.raises(DataError, match="needs at least 50 ID training images"):
        create_detector("knn").fit(resnet20, split[0].take(torch.arange(20)))
    few_classes = split[0].take(torch.nonzero(split[0].labels < 5).flatten())
    with pytest.raises(DataError, match=r"every class; none of class\(es\) \[5, 6, 7, 8, 9\]"):
        Mahalanobis().fit(resnet20, few_classes)
    resnet20.train()
    try:
        with pytest.raises(ValueError, match="call model.eval"):
            MSP().fit(resnet20)
        with pytest.raises(ValueError, match="call model.eval"):
            fit_detectors({"knn": create_detector("knn")}, resnet20, split[0])  # before BatchNorm sees data
    finally:
        resnet20.eval()
    with pytest.raises(ConfigError, match="unknown detector 'gram'"):
        create_detector("gram")
    with pytest.raises(ConfigError, match="detector 'knn' takes no temperature; it takes k"):
        create_detector("knn", temperature=2.0)


def test_features_hooks_and_heads():
    cnn = create_model("small_cnn", num_classes=10, in_shape=(3, 32, 32)).eval()
    assert find_head(cnn)[0] == "classifier.3"
    assert find_head(create_model("resnet20", num_classes=10, in_shape=(3, 32, 32)))[0] == "linear"
    with pytest.raises(ConfigError, match="no layer 'fc'; its last layers are: .*classifier.3"):
        find_head(cnn, "fc")
    with pytest.raises(ConfigError, match="must be an nn.Linear, not ReLU"):
        find_head(cnn, "classifier.2")
    x = torch.rand(3, 3, 32, 32)
    with capture(cnn, "classifier.2") as hidden, capture(cnn, "classifier.3", inputs=True) as head_input:
        cnn(x)
    assert hidden[-1].shape == (3, 128) and torch.equal(hidden[-1], head_input[-1])
    with pytest.raises(RuntimeError), capture(cnn, "features.0"):
        cnn(torch.rand(3, 5, 32, 32))  # wrong channel count: the forward fails inside the hook's scope
    assert all(not m._forward_hooks for m in cnn.modules())  # removed anyway


def test_pure_statistics_against_references():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(300, 6, generator=generator, dtype=torch.float64)
    labels = torch.arange(300) % 3
    features[labels == 1] += 2.0
    means, precision = class_means_and_precision(features, labels, 3)
    reference = EmpiricalCovariance().fit((features - means[labels]).numpy())
    assert np.allclose(precision.numpy(), reference.precision_, atol=1e-8)
    query = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    brute = torch.stack([torch.einsum("nd,de,ne->n", query - m, precision, query - m) for m in means], 1)
    assert torch.allclose(mahalanobis_score(query, means, precision), -brute.amin(1))

    bank = torch.nn.functional.normalize(torch.randn(100, 6, generator=generator), dim=1)
    distances = torch.cdist(torch.nn.functional.normalize(query.float(), dim=1), bank)
    assert torch.allclose(knn_score(query, bank, 7), -distances.sort(dim=1).values[:, 6], atol=1e-5)

    values = torch.rand(1001, generator=generator)
    for p in (0, 37.5, 90, 100):
        assert percentile(values, p).item() == pytest.approx(np.percentile(values.numpy(), p), rel=1e-6)
    assert (principal_dim(64), principal_dim(1024), principal_dim(2048)) == (32, 512, 1000)


def test_detectors_that_cannot_run_on_a_model_are_left_out_with_the_reason(resnet20, split):
    fit, ids = split[0].take(torch.arange(30)), split[1].take(torch.arange(20))
    ood = {"noise": noise("gaussian", 20, seed=2)}
    detectors = {"msp": MSP(), "knn": create_detector("knn", k=50), "energy": create_detector("energy")}
    with pytest.raises(DataError, match="KNN with k=50 needs at least 50"):
        evaluate_detectors(detectors, resnet20, fit, ids, ood)
    evaluation = evaluate_detectors(detectors, resnet20, fit, ids, ood, skip_unusable=True)
    assert evaluation.skipped == {"knn": "KNN with k=50 needs at least 50 ID training images, got 30"}
    assert set(evaluation.id_scores) == set(evaluation.ood_scores["noise"]) == {"msp", "energy"}
    alone = evaluate_detectors({"msp": MSP()}, resnet20, fit, ids, ood)
    assert torch.equal(evaluation.id_scores["msp"], alone.id_scores["msp"]) and evaluation.accuracy == alone.accuracy
    headless = torch.nn.Sequential(torch.nn.Conv2d(3, 10, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    evaluation = evaluate_detectors({"msp": MSP(), "energy": create_detector("energy")}, headless, fit, ids, ood,
                                    skip_unusable=True)  # fmt: skip
    assert evaluation.id_scores == {} and evaluation.records({"noise": "far"}) == [] and set(evaluation.skipped) == {
        "msp", "energy"}  # fmt: skip
    assert all("has no nn.Linear layer to use as the classifier head" in why for why in evaluation.skipped.values())
