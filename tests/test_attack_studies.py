"""The attack studies end to end through the command line, on tiny configurations and real data."""

import numpy as np
import pytest

from dlapps.errors import ConfigError
from dlapps.experiments import get_study
from dlapps.experiments.attacks import TargetedConfig
from dlapps.report.io import read_json
from figures_check import assert_figures, assert_line, bars, images, kept_figures, panel
from helpers import assert_one_line_error, dlapps_main


def run_study(study: str, out, data_root, *settings: str):
    """results.json, report.md and the figures drawn, by file name."""
    args = ["run", study, "--profile", "quick", "--no-progress", "--out", str(out)]
    for setting in settings:
        args += ["--set", setting]
    drawn = out.parent / f"{out.name}-figures"
    result = dlapps_main(*args, data_root=data_root, figures=drawn)
    assert result.returncode == 0, result.stderr
    assert not list(out.glob(".staging*"))
    return read_json(out / "results.json"), (out / "report.md").read_text(), kept_figures(drawn)


def assert_examples(figure, examples: dict) -> None:
    """Rows of originals, perturbations amplified so that ±ε spans black to white, and adversarial images,
    each within ε of its original; captions give the confidences of results.json."""
    eps = examples["eps_255"] / 255
    grid = np.array(figure.axes).reshape(3, -1)
    original, amplified, adversarial = (np.stack([images(a)[0] for a in row]) for row in grid)
    assert len(original) == len(examples["label"])
    assert np.abs(adversarial - original).max() <= eps + 1e-6 and np.abs(adversarial - original).max() > eps / 2
    np.testing.assert_allclose(amplified, np.clip(0.5 + (adversarial - original) * 0.5 / eps, 0, 1), atol=1e-6)
    for axis, confidence in zip(grid[0], examples["confidence_before"], strict=True):
        assert axis.get_title().endswith(f" {confidence:.0%}")
    for axis, confidence in zip(grid[2], examples["confidence_after"], strict=True):
        assert axis.get_title().endswith(f" {confidence:.0%}")


@pytest.mark.slow
def test_fgsm_sweep(tmp_path, data_root):
    out = tmp_path / "fgsm"
    results, report, kept = run_study(
        "fgsm", out, data_root, "test_subset=40", "epsilons=0.5,2,8", "steps=3", "examples=2", "batch_size=40"
    )
    sweep = results["rows"]
    assert {row["mode"] for row in sweep} == {"untargeted"}
    assert [row["eps_255"] for row in sweep] == [0.5, 2, 8]
    rates = [row["success_rate"] for row in sweep]
    assert rates == sorted(rates) and rates[-1] == 1.0 and rates[0] < 1.0
    assert all(row["attacked"] >= 33 and 0 <= row["mean_iterations"] <= 3 for row in sweep)  # ResNet-20: ~92%
    assert sweep[-1]["robust_accuracy"] == 0.0 and sweep[-1]["mean_confidence_drop"] > 0.5
    assert len(results["examples"]["label"]) == 2 and all(results["examples"]["success"])
    assert results["victim"]["title"] == "ResNet-20 (published CIFAR-10 weights)"
    drawn = assert_figures(out, report, kept, "sweep.png", "examples.png")
    eps = [0.5, 2, 8]
    for title, key in (("attack success rate", "success_rate"), ("mean iterations to success (max 3)", "mean_iterations"),
                       ("mean true-class confidence drop", "mean_confidence_drop")):  # fmt: skip
        assert_line(panel(drawn["sweep.png"], title), "", eps, [row[key] for row in sweep])
    accuracy = panel(drawn["sweep.png"], "accuracy")
    assert_line(accuracy, "clean", eps, [row["clean_accuracy"] for row in sweep])
    assert_line(accuracy, "robust", eps, [row["robust_accuracy"] for row in sweep])
    assert_examples(drawn["examples.png"], results["examples"])
    assert "| a larger ε gives a more successful attack (write-up) | holds: " in report
    assert f"| robust accuracy of an undefended model at ε = 8/255 | {sweep[-1]['robust_accuracy']:.3f} |" in report
    assert (out / "results.csv").read_text().count("\n") == 4 and "| ε |" in (out / "table.md").read_text()


@pytest.mark.slow
def test_targeted_against_untargeted_on_a_small_cnn(tmp_path, data_root):
    out = tmp_path / "targeted"
    results, report, kept = run_study(
        "targeted",
        out,
        data_root,
        "model=small_cnn",
        "model.train.epochs=1",
        "model.train_subset=1000",
        "test_subset=40",
        "epsilons=8",
        "steps=6",
        "targets=random,cat",
        "examples=2",
    )
    rows = {row["mode"]: row for row in results["rows"]}
    assert list(rows) == ["untargeted", "random", "class cat"]
    assert rows["class cat"]["skipped"] > 0 and all(rows[m]["skipped"] == 0 for m in ("untargeted", "random"))
    assert rows["untargeted"]["success_rate"] >= rows["random"]["success_rate"] > 0
    assert (
        results["victim"]["title"] == "small CNN trained here on CIFAR-10"
        and len(list((out.parent / "models").glob("*.safetensors"))) == 1
    )
    assert all(len(row["cumulative_success"]) == 7 for row in rows.values())
    drawn = assert_figures(out, report, kept, "comparison.png", "cumulative_success.png", "examples.png")
    for title, key in (
        ("attack success rate", "success_rate"),
        ("mean true-class confidence drop", "mean_confidence_drop"),
    ):
        assert bars(panel(drawn["comparison.png"], title)) == {m: [pytest.approx(r[key])] for m, r in rows.items()}
    curves = panel(drawn["cumulative_success.png"], "ε = 8/255")
    for mode, row in rows.items():
        assert_line(curves, mode, range(7), row["cumulative_success"])
    assert_examples(drawn["examples.png"], results["examples"])
    iterations = f"untargeted {rows['untargeted']['mean_iterations']:.3f}; targeted: random "
    assert (
        "| untargeted attacks need fewer iterations than targeted ones (write-up) |" in report and iterations in report
    )


@pytest.mark.slow
def test_adversarial_training(tmp_path, data_root):
    out = tmp_path / "adv"
    results, report, kept = run_study(
        "adv-train",
        out,
        data_root,
        "width=8",
        "train_subset=500",
        "test_subset=40",
        "train.epochs=2",
        "weightings=0.5/0.5,0/1",
        "eval_steps=2,3",
    )
    variants = results["variants"]
    assert [v["variant"] for v in variants] == ["standard", "fgsm-rs 0.5/0.5", "fgsm-rs 0/1"]
    robust = ["clean accuracy", "FGSM accuracy", "PGD-2 accuracy", "PGD-3 accuracy", "APGD-CE-2 accuracy",
              "APGD-CE-3 accuracy"]  # fmt: skip
    ood = ["MSP AUROC (CIFAR-100)", "MSP AUPR-In (CIFAR-100)"]
    assert all(list(v["metrics"]) == robust + ood for v in variants)
    assert all(0 <= v["metrics"][m] <= v["metrics"]["clean accuracy"] for v in variants for m in robust)
    assert all(v["metrics"]["APGD-CE-3 accuracy"] <= v["metrics"]["PGD-3 accuracy"] + 0.05 for v in variants)
    assert all(0 < v["metrics"][m] < 1 for v in variants for m in ood)
    assert variants[1]["objective"].startswith("adversarial fgsm-rs eps=0.0313725 alpha=0.0392157 steps=1")
    assert len({v["model"] for v in variants}) == 3 and len(list((out.parent / "models").glob("*.safetensors"))) == 3
    drawn = assert_figures(out, report, kept, "robustness.png", "training.png")
    (robustness,) = drawn["robustness.png"].axes  # a cluster of bars per variant, a bar per metric
    assert bars(robustness) == {m: pytest.approx([v["metrics"][m] for v in variants]) for m in robust + ood}
    for title, key in (("test accuracy (clean)", "test_acc"),
                       ("train accuracy\n(on adversarial batches where trained on them)", "train_acc")):  # fmt: skip
        for v in variants:
            assert_line(panel(drawn["training.png"], title), v["variant"], [1, 2], [h[key] for h in v["history"]])
    even = variants[1]["metrics"]["MSP AUROC (CIFAR-100)"]
    assert f"| 0.5/0.5: MSP AUROC (CIFAR-100) | {even:.3f} | 0.650 | {even - 0.65:+.3f} |" in report
    assert "| FGSM-RS 0/1: clean accuracy |" in report and "0.861" in report


@pytest.mark.slow
def test_adversarial_training_over_seeds_with_the_targeted_comparison(tmp_path, data_root):
    """The write-up's targeted-vs-untargeted comparison on every trained model, two seeds each."""
    from dlapps.attacks import attack_arrays, summarize
    from dlapps.data import load_arrays
    from dlapps.models import from_checkpoint

    out = tmp_path / "adv"
    results, report, kept = run_study(
        "adv-train", out, data_root, "width=8", "train_subset=500", "test_subset=40", "train.epochs=1",
        "weightings=0.5/0.5", "seeds=2", "evaluations=targeting", "attack_eps=4", "attack_steps=5",
    )  # fmt: skip
    runs = results["variants"]
    assert [(r["variant"], r["seed"]) for r in runs] == [("standard", 0), ("fgsm-rs 0.5/0.5", 0), ("standard", 1),
                                                         ("fgsm-rs 0.5/0.5", 1)]  # fmt: skip
    assert len({r["model"] for r in runs}) == 4
    labels = [f"{mode} {m}" for mode in ("untargeted", "targeted")
              for m in ("success rate", "mean iterations to success", "mean confidence drop")]  # fmt: skip
    assert all(list(r["metrics"]) == labels for r in runs)
    model = from_checkpoint(next((out.parent / "models").glob(f"{runs[2]['model']}*.safetensors"))).module
    test = load_arrays("cifar10", "test", data_root).subset(40, 0)
    again = summarize(attack_arrays(model, test, method="bim", eps=4 / 255, alpha=1 / 255, steps=5))
    assert runs[2]["metrics"]["untargeted success rate"] == again["success_rate"]
    assert runs[2]["metrics"]["untargeted mean iterations to success"] == again["mean_iterations"]
    drawn = assert_figures(out, report, kept, "targeting.png")
    for title, metric in (("success rate", "success rate"), ("mean confidence drop", "mean confidence drop")):
        heights = bars(panel(drawn["targeting.png"], title))  # a cluster per variant: the mean over seeds
        for mode in ("untargeted", "targeted"):
            means = [np.mean([r["metrics"][f"{mode} {metric}"] for r in runs if r["variant"] == v])
                     for v in ("standard", "fgsm-rs 0.5/0.5")]  # fmt: skip
            assert heights[mode] == pytest.approx(means)
    assert "mean ± standard deviation" in report and " ± " in (out / "table.md").read_text()
    assert "on the standard model targeted attacks do not have that advantage" in report


def test_the_targeted_comparison_reads_the_gap_against_its_spread():
    from dlapps.experiments.adv_train import AdvTrain

    config = get_study("adv-train").config("writeup")

    def variants(standard, even):
        return {"standard": {"untargeted success rate": [0.5] * 3, "targeted success rate": standard},
                "fgsm 0.5/0.5": {"untargeted success rate": [0.5] * 3, "targeted success rate": even}}  # fmt: skip

    held = AdvTrain._targeting_claims(config, variants([0.45, 0.46, 0.44], [0.55, 0.56, 0.54]))
    assert [c.holds for c in held] == [True, True]
    noisy = AdvTrain._targeting_claims(config, variants([0.40, 0.60, 0.50], [0.52, 0.60, 0.45]))
    assert [c.holds for c in noisy] == [True, False] and "within the spread over seeds" in noisy[1].evidence
    assert [c.holds for c in AdvTrain._targeting_claims(config, variants([0.6] * 3, [0.4] * 3))] == [False, False]


@pytest.mark.parametrize(
    ("study", "setting", "fragment"),
    [
        ("fgsm", "epsilons=-1", "epsilons: must be in \\[0, 255\\] grey levels"),
        ("fgsm", "epsilons=2,300", "epsilons: must be in \\[0, 255\\] grey levels .* got 300.0"),
        ("fgsm", "method=cw", "method: unknown attack 'cw'; known: fgsm, fgsm-rs, bim"),
        ("adv-train", "method=cw", "method: unknown attack 'cw'; known: fgsm, fgsm-rs, bim"),
        ("fgsm", "example_eps=-2", "example_eps: must be in \\[0, 255\\]"),
        ("targeted", "epsilons=8,2", "epsilons must increase"),
        ("adv-train", "weightings=1", "weighting '1' must be w_clean/w_adv"),
        ("adv-train", "weightings=0.5/0", "must be w_clean/w_adv with w_clean >= 0 and w_adv > 0"),
        ("adv-train", "steps=3", "fgsm-rs takes one step"),
    ],
)
def test_bad_settings(study, setting, fragment):
    with pytest.raises(ConfigError, match=fragment):
        get_study(study).config("quick", [setting])


def test_unknown_target_class():
    classes = ("airplane", "cat")
    assert TargetedConfig(targets=("1", "airplane", "random")).modes(classes) == {
        "untargeted": None,
        "class cat": 1,
        "class airplane": 0,
        "random": "random",
    }
    with pytest.raises(ConfigError, match="targets entry 'unicorn' is not random or least-likely"):
        TargetedConfig(targets=("unicorn",)).modes(classes)


def test_bad_setting_is_one_line_on_the_command_line(tmp_path, data_root):
    result = dlapps_main("run", "fgsm", "--set", "epsilons=-1", "--out", str(tmp_path), data_root=data_root)
    assert_one_line_error(result, "epsilons: must be in [0, 255] grey levels")


def test_adv_train_refuses_an_ood_set_of_another_size_before_training(tmp_path, data_root):
    digits = tmp_path / "digits.npz"
    np.savez(digits, images=np.zeros((8, 28, 28, 1), dtype=np.uint8), labels=np.arange(8) % 2,
             classes=np.array(["zero", "one"]))  # fmt: skip
    out = tmp_path / "out"
    result = dlapps_main("run", "adv-train", "--profile", "quick", "--no-progress", "--out", str(out),
                         "--set", f"ood_set={digits}", "--set", "train_subset=200", data_root=data_root)  # fmt: skip
    assert_one_line_error(result, "images are (1, 28, 28) (C, H, W) but the model takes (3, 32, 32)")
    assert not list(out.glob("runs/models/*")) and not list(out.glob("**/*.safetensors"))  # nothing was trained
