"""The eight newer detectors against pytorch-ood 0.4 (a dev dependency) on the published ResNet-20: fitted on
the same CIFAR-10 images with the same hyper-parameters, they rank CIFAR-10 test against CIFAR-100
test images alike (AUROC within 1e-4) and, where the definitions differ only by sign or scale, score alike."""

import pytest
import torch

from dlapps.data import load_arrays
from dlapps.ood import ASH, DICE, FDBD, GEN, NAC, RMDS, SCALE, SHE, auroc
from dlapps.ood.features import collect_outputs
from dlapps.ood.nac import neuron_states

pytorch_ood = pytest.importorskip("pytorch_ood.detector")


@pytest.fixture(scope="module")
def images(data_root, cifar10_test):
    """Images in [0, 1]: 400 CIFAR-10 test images to fit on (the training archive takes long to decode), 200 other
    CIFAR-10 and 200 CIFAR-100 test images to score."""
    cifar10 = cifar10_test.subset(600, seed=4)
    sets = {
        "fit": cifar10.take(torch.arange(400)),
        "id": cifar10.take(torch.arange(400, 600)),
        "ood": load_arrays("cifar100", "test", data_root).subset(200, seed=5),
    }
    return {name: (data.images.float() / 255, data.labels) for name, data in sets.items()}


@pytest.fixture(scope="module")
def outputs(resnet20, images):
    """dlapps' logits and head features of each set, computed once."""
    return {name: collect_outputs(resnet20, [batch], "linear") for name, batch in images.items()}


def dlapps_scores(detector, model, outputs, images=None):
    if images is None:
        detector.fit_outputs(model, outputs["fit"])
        return [detector.score_outputs(outputs[name]).float() for name in ("id", "ood")]
    detector.fit(model, [images["fit"]])
    return [detector.score(images[name][0]) for name in ("id", "ood")]


def assert_same_ranking(mine, reference, scale=1.0):
    """``reference`` is pytorch-ood's outlier score; ``scale``: its factor against the negated score here."""
    reference = [-r.detach().float() for r in reference]
    assert auroc(*mine) == pytest.approx(auroc(*reference), abs=1e-4)
    for m, r in zip(mine, reference, strict=True):
        # float32 there: differences of large distances keep about 1e-4 of the scores' range
        assert torch.allclose(m, scale * r, rtol=1e-3, atol=1e-3 * float(m.abs().max()))


def test_gen(resnet20, outputs):
    mine = dlapps_scores(GEN(), resnet20, outputs)
    reference = [pytorch_ood.GEN.score(outputs[n].logits, gamma=0.1) for n in ("id", "ood")]
    assert_same_ranking(mine, reference, scale=10)  # pytorch-ood averages over the 10 classes, the paper sums


def test_rmds(resnet20, outputs):
    mine = dlapps_scores(RMDS(), resnet20, outputs)
    rmd = pytorch_ood.RMD(None).fit_features(outputs["fit"].features, outputs["fit"].labels)
    # pytorch-ood's covariances are sums over the 400 images, not means: its distances are 1/400 of these
    assert_same_ranking(mine, [rmd.predict_features(outputs[n].features) for n in ("id", "ood")], scale=400)


def test_fdbd(resnet20, outputs):
    mine = dlapps_scores(FDBD(), resnet20, outputs)
    fdbd = pytorch_ood.fDBD(None, resnet20.linear).fit_features(outputs["fit"].features)
    assert_same_ranking(mine, [fdbd.predict_features(outputs[n].features) for n in ("id", "ood")])


def test_she(resnet20, outputs):
    mine = dlapps_scores(SHE(), resnet20, outputs)
    she = pytorch_ood.SHE(None, resnet20.linear).fit_features(outputs["fit"].features, outputs["fit"].labels)
    assert_same_ranking(mine, [she.predict_features(outputs[n].features) for n in ("id", "ood")])


def feature_maps_head(model):
    return lambda maps: model.linear(maps.flatten(1))


@pytest.mark.parametrize("variant", ["p", "b", "s"])
def test_ash(resnet20, outputs, variant):
    mine = dlapps_scores(ASH(percentile=90, variant=variant), resnet20, outputs)
    ash = pytorch_ood.ASH(None, feature_maps_head(resnet20), variant=f"ash-{variant}", percentile=0.9)
    reference = [ash.predict_feature_maps(outputs[n].features[:, :, None, None]) for n in ("id", "ood")]
    assert_same_ranking(mine, reference)


def test_scale(resnet20, outputs):
    mine = dlapps_scores(SCALE(), resnet20, outputs)
    scale = pytorch_ood.SCALE(None, feature_maps_head(resnet20), percentile=0.85)
    reference = [scale.predict_feature_maps(outputs[n].features[:, :, None, None]) for n in ("id", "ood")]
    assert_same_ranking(mine, reference)


def test_dice(resnet20, outputs):
    mine = dlapps_scores(DICE(), resnet20, outputs)
    head = resnet20.linear
    dice = pytorch_ood.DICE(None, head.weight, head.bias, p=0.9).fit_features(
        outputs["fit"].features, outputs["fit"].labels
    )
    assert_same_ranking(mine, [dice.predict_features(outputs[n].features) for n in ("id", "ood")])


def test_nac(resnet20, images, outputs):
    layers = ("layer1", "layer2", "layer3", "pool")
    mine = dlapps_scores(NAC(layers=layers), resnet20, outputs, images)
    nac = pytorch_ood.NACUE(resnet20, [getattr(resnet20, name) for name in layers]).fit([images["fit"]])
    assert_same_ranking(mine, [nac.predict(images[n][0]) for n in ("id", "ood")])
    # By default NAC reads the head's input, which in ResNet-20 is the pool's output, flattened.
    x = images["id"][0][:50]
    (head_input,), (pooled,) = (
        neuron_states(resnet20, x, [layer], alpha=100) for layer in [("linear", True), ("pool", False)]
    )
    assert torch.equal(head_input, pooled)
