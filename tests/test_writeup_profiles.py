"""The ``writeup`` profiles: every study has one, and the write-up's models are each trained once and shared."""

import shutil

import pytest

from dlapps.errors import ConfigError
from dlapps.experiments import get_study
from dlapps.experiments.reproduce import writeup_studies


def test_every_study_has_a_valid_writeup_profile():
    """Each study of the write-up has a profile of its own setup: not the quick one, and one whose published
    figures apply."""
    studies = writeup_studies()
    assert {s.name for s in studies} == {"residual-mlp", "residual-cnn", "cam", "ood", "fgsm", "adv-train", "targeted"}
    for study in studies:
        config = study.config("writeup")
        assert isinstance(config, study.config_type) and config != study.config("quick"), study.name
        assert study.no_reference(config) is None, study.name


def test_the_writeup_profiles_share_one_small_cnn():
    """Trained once: the same recipe wherever a writeup profile names the write-up's small CNN."""
    ood, fgsm, targeted, adv = (get_study(s).config("writeup") for s in ("ood", "fgsm", "targeted", "adv-train"))
    keys = {ood.baseline.recipe("cifar10", None, ood.id_subset).key(), fgsm.model.recipe("cifar10", None).key(),
            targeted.model.recipe("cifar10", None).key(), adv.recipe(None, 0).key()}  # fmt: skip
    assert len(keys) == 1 and adv.recipe(adv.objectives()["fgsm 0.5/0.5"], 0).key() not in keys


def test_the_writeup_profiles_share_one_resnet20():
    """residual-cnn trains the write-up's ResNet-20; cam explains it and ood analyses it, without training it."""
    cnn, ood, cam = (get_study(s).config("writeup") for s in ("residual-cnn", "ood", "cam"))
    trained = cnn.recipe(3, skip=True, seed=0)
    assert 3 in cnn.blocks and dict(trained.hparams) == {}  # the architecture's defaults: ResNet-20
    assert ood.with_companion and ood.companion.recipe("cifar10", None, ood.id_subset).key() == trained.key()
    explained = get_study("residual-cnn").config(cam.residual_cnn, list(cam.residual_cnn_set))
    assert explained.recipe(max(explained.blocks), skip=True, seed=0).key() == trained.key()
    assert cnn.recipe(3, skip=False, seed=0).key() != trained.key()


def test_the_writeup_cam_explains_resnet18_or_says_what_stands_in(tmp_path, data_root):
    cam = get_study("cam")
    config = cam.config("writeup")
    assert config.model.name == "resnet18_imagenet"
    spec, why = cam.model(config, data_root)  # no ResNet-18 weights in the data root, none to be downloaded
    assert spec.name == "mobilenet_v2_imagenet" and "`--download` fetches it" in why
    assert cam.model(config, data_root, download=True) == (config.model, None)
    (tmp_path / "weights").mkdir()  # neither model's weights: the missing ones are the write-up's model's
    assert cam.model(config, tmp_path) == (config.model, None)
    assert "ResNet-18 weights (resnet18_imagenet)" in [n.what for n in cam.needs(config, tmp_path)]
    shutil.copy(data_root / "weights" / "mobilenet_v2_imagenet.safetensors", tmp_path / "weights")
    assert cam.model(config, tmp_path)[0].name == "mobilenet_v2_imagenet"


def test_adv_train_evaluates_a_subset_of_its_test_images():
    with pytest.raises(ConfigError, match="eval_subset=600 exceeds test_subset=500"):
        get_study("adv-train").config("quick", ["eval_subset=600"])
    assert get_study("adv-train").config("writeup").eval_subset == 2000


def _ood_results(accuracy: dict[str, float], auroc: dict[str, float]) -> dict:
    labels = {"baseline": "small CNN trained here on CIFAR-10", "companion": "ResNet-20 trained here on CIFAR-10",
              "model": "ResNet-20 (published CIFAR-10 weights)"}  # fmt: skip
    return {
        "models": {role: {"label": labels[role], "accuracy": accuracy[role]} for role in accuracy},
        "metrics": [
            {"model": role, "detector": "msp", "ood_set": "cifar100", "auroc": value} for role, value in auroc.items()
        ],  # fmt: skip
        "summary": [],
    }


def test_ood_compares_the_resnet_trained_here_with_the_writeups_and_both_resnets_with_the_small_cnn():
    study = get_study("ood")
    config = study.config("writeup")
    rows = study.compare(config, _ood_results({"baseline": 0.63, "companion": 0.80, "model": 0.917},
                                              {"baseline": 0.65, "companion": 0.80, "model": 0.60}))  # fmt: skip
    accuracy = {r.quantity: (r.ours, r.writeup) for r in rows if "test accuracy" in r.quantity}
    assert accuracy == {"small CNN trained here on CIFAR-10: CIFAR-10 test accuracy": (0.63, 0.64),
                        "ResNet-20 trained here on CIFAR-10: CIFAR-10 test accuracy": (0.80, 0.81)}  # fmt: skip
    claims = {r.quantity.split(": ")[1]: r.holds for r in rows if r.holds is not None}
    assert claims == {"ResNet-20 trained here on CIFAR-10": True, "ResNet-20 (published CIFAR-10 weights)": False}
    alone = study.compare(study.config("quick"), _ood_results({"baseline": 0.5, "model": 0.917},
                                                              {"baseline": 0.6, "model": 0.8}))  # fmt: skip
    assert [(r.ours, r.writeup) for r in alone if "test accuracy" in r.quantity] == [(0.5, 0.64), (0.917, 0.81)]


@pytest.mark.parametrize("profile, claimed", [("writeup", False), ("quick", True)])
def test_the_degradation_claim_needs_a_plain_net_of_32_layers(profile, claimed):
    """He et al.'s plain nets degrade from 32 layers on: the writeup profile's 8 and 20 layers are not tested."""
    study = get_study("residual-cnn")
    config = study.config(profile)
    summary = [{"layers": 6 * b + 2, "skip": s, "mean_test_acc": 0.7 - 0.01 * b + 0.05 * s}
               for b in config.blocks for s in (False, True)]  # fmt: skip
    claims = [row.quantity for row in study.compare(config, {"summary": summary})]
    assert any("deeper plain net is worse" in c for c in claims) == claimed
    assert any("skip connections give higher accuracy" in c for c in claims)
