"""Comparing models on the same images: paired bootstrap differences, and the multi-model audit end to end."""

import pytest
import torch
from sklearn.metrics import roc_auc_score

from dlapps.evaluate.comparison import Measure, compare_all, paired_difference
from dlapps.experiments.audit_comparison import model_labels
from dlapps.report.io import read_json
from figures_check import assert_figures, kept_figures
from helpers import assert_one_line_error, dlapps_main, trained_small_cnn


def _correct(n: int, accuracy: float, seed: int) -> torch.Tensor:
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) < accuracy).double()


def test_a_model_against_itself_is_exactly_within_noise():
    measure = Measure("top-1 accuracy", "accuracy", ((_correct(500, 0.8, 0),),))
    found = paired_difference(measure, measure)
    assert found["difference"]["estimate"] == found["difference"]["low"] == found["difference"]["high"] == 0
    assert found["first_better"] is None


def test_a_clearly_better_model_wins_and_a_close_one_is_within_noise():
    base = _correct(2000, 0.7, 1)
    better = torch.where(_correct(2000, 0.5, 2).bool(), torch.ones_like(base), base)  # right on half of base's errors
    close = base.clone()
    close[:3] = 1 - close[:3]  # three images differ
    measures = [Measure("top-1 accuracy", "accuracy", ((c,),)) for c in (base, better, close)]
    rows = compare_all([[m] for m in measures], resamples=1000, seed=0)
    (row,) = rows
    assert [v["estimate"] for v in row["values"]] == pytest.approx(
        [base.mean().item(), better.mean().item(), close.mean().item()]
    )
    against_better, against_close = row["against_first"]
    assert against_better["first_better"] is True and against_better["difference"]["low"] > 0
    assert against_close["first_better"] is None
    # paired: the difference's interval is much narrower than either model's own
    own = row["values"][0]["high"] - row["values"][0]["low"]
    assert against_close["difference"]["high"] - against_close["difference"]["low"] < own / 3


def test_lower_is_better_for_ece_and_auroc_pairs_id_and_ood_images():
    confidence = torch.rand(1000, generator=torch.Generator().manual_seed(3)).double()
    correct = (torch.rand(1000, generator=torch.Generator().manual_seed(4)) < confidence).double()
    calibrated = Measure("ECE", "ece", ((confidence, correct),))
    overconfident = Measure("ECE", "ece", (((confidence + 1) / 2, correct),))
    found = paired_difference(overconfident, calibrated)
    assert found["difference"]["estimate"] > 0.15 and found["first_better"] is False  # higher ECE is worse
    ids, oods = torch.randn(300).double() + 1, torch.randn(400).double()
    auroc = Measure("AUROC", "auroc", ((ids,), (oods,)))
    reference = roc_auc_score([1] * 300 + [0] * 400, torch.cat([ids, oods]).numpy())
    assert auroc.interval().estimate == pytest.approx(reference, abs=1e-12)
    assert paired_difference(auroc, Measure("AUROC", "auroc", ((ids - 5,), (oods,))))["first_better"] is True
    with pytest.raises(ValueError, match="takes samples of"):
        Measure("AUROC", "auroc", ((ids,),))


def test_model_labels_are_short_distinct_and_file_safe():
    assert model_labels(("resnet20_cifar10", "runs/models/small_cnn-cifar10-ab12.safetensors", "resnet20_cifar10")) == (
        "resnet20_cifar10", "small_cnn-cifar10-ab12", "resnet20_cifar10-3")  # fmt: skip
    assert model_labels(("../evil name/..;rm -rf.safetensors",)) == ("rm--rf",)


TINY = [
    "test_subset=120",
    "attack_images=40",
    "epsilons=2,8",
    "attack_steps=3",
    "ensemble_steps=3",
    "square_queries=10",
    "id_subset=60",
    "ood_subset=60",
    "fit_subset=200",
    "detectors=msp,energy",
    "faithfulness_images=8",
    "deletion_images=4",
    "deletion_steps=4",
    "sanity_images=4",
    "grid_images=2",
    "resamples=200",
    "ood_sets=gaussian",
]


@pytest.mark.slow
def test_audit_of_two_models_writes_one_comparison(tmp_path, data_root):
    checkpoint = trained_small_cnn(tmp_path / "models", "cifar10", data_root, "train_subset=1000", "test_subset=200",
                                   "train.epochs=1")  # fmt: skip
    out = tmp_path / "both"
    args = ["audit", "--model", "resnet20_cifar10", "--model", str(checkpoint), "--data", "cifar10", "--out", str(out),
            "--no-progress", *(item for setting in TINY for item in ("--set", setting))]  # fmt: skip
    result = dlapps_main(*args, data_root=data_root, figures=tmp_path / "figures")
    assert result.returncode == 0, result.stderr
    results, report = read_json(out / "results.json"), (out / "report.md").read_text()
    labels = [m["label"] for m in results["models"]]
    assert labels == ["resnet20_cifar10", checkpoint.stem]
    for label in labels:  # each model's own audit, in its own folder
        assert read_json(out / label / "results.json")["model"]["title"] in report
    rows = {row["name"]: row for row in results["comparison"]}
    accuracy = rows["top-1 accuracy"]
    own = [read_json(out / label / "results.json")["accuracy"]["top1"] for label in labels]
    assert [v["estimate"] for v in accuracy["values"]] == pytest.approx(own)
    (against,) = accuracy["against_first"]  # a 1-epoch small CNN against the published ResNet-20: clearly worse
    assert against["difference"]["estimate"] == pytest.approx(own[1] - own[0]) and against["first_better"] is False
    assert {"ECE", "robust accuracy, L∞ 8/255", "robust accuracy, L2 0.5", "AUROC, MSP, gaussian"} <= set(rows)
    assert "worse" in report and "(95% interval)" in report
    drawn = assert_figures(out, report, kept_figures(tmp_path / "figures"), "comparison.png")
    panels = {axis.get_title(): axis for axis in drawn["comparison.png"].axes}
    heights = [patch.get_height() for patch in panels["top-1 accuracy"].patches]
    assert heights == pytest.approx([100 * v["estimate"] for v in accuracy["values"]])
    (bars_of_errors,) = panels["top-1 accuracy"].collections  # each interval, drawn as one vertical segment
    drawn_intervals = [y for segment in bars_of_errors.get_segments() for y in sorted(segment[:, 1])]
    assert drawn_intervals == pytest.approx([100 * b for v in accuracy["values"] for b in (v["low"], v["high"])])
    again = dlapps_main(*args, data_root=data_root)  # every model's sections are cached
    assert again.returncode == 0 and read_json(out / "results.json")["comparison"] == results["comparison"]


def test_models_of_different_classes_are_one_line_before_any_work(tmp_path, data_root):
    checkpoint = trained_small_cnn(tmp_path / "models", "mnist", data_root, "train_subset=200", "test_subset=50",
                                   "train.epochs=1", "image_size=32")  # fmt: skip
    out = tmp_path / "both"
    result = dlapps_main("audit", "--model", "resnet20_cifar10", "--model", str(checkpoint), "--data", "cifar10",
                         "--out", str(out), "--no-progress", data_root=data_root)  # fmt: skip
    assert_one_line_error(result, "channel")
    assert not (out / "resnet20_cifar10").exists()  # no audit started
