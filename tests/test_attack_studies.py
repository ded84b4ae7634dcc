"""The attack studies end to end through the command line, on tiny configurations and real data."""

import pytest

from dlapps.errors import ConfigError
from dlapps.experiments import get_study
from dlapps.experiments.attacks import TargetedConfig
from dlapps.report.io import read_json
from helpers import assert_one_line_error, dlapps

pytestmark = pytest.mark.slow  # whole studies and commands, end to end


def run_study(study: str, out, data_root, *settings: str):
    args = ["run", study, "--profile", "quick", "--no-progress", "--out", str(out)]
    for setting in settings:
        args += ["--set", setting]
    result = dlapps(*args, data_root=data_root)
    assert result.returncode == 0, result.stderr
    return read_json(out / "results.json"), (out / "report.md").read_text()


def assert_figures(out, report: str, *names: str) -> None:
    for name in names:
        assert (out / name).stat().st_size > 10_000 and f"({name})" in report
    assert not list(out.glob(".staging*"))


def test_fgsm_sweep(tmp_path, data_root):
    out = tmp_path / "fgsm"
    results, report = run_study(
        "fgsm", out, data_root, "test_subset=60", "epsilons=0.5,2,8", "steps=3", "examples=3", "batch_size=40"
    )
    sweep = results["rows"]
    assert {row["mode"] for row in sweep} == {"untargeted"}
    assert [row["eps_255"] for row in sweep] == [0.5, 2, 8]
    rates = [row["success_rate"] for row in sweep]
    assert rates == sorted(rates) and rates[-1] == 1.0 and rates[0] < 1.0
    assert all(row["attacked"] >= 50 and 0 <= row["mean_iterations"] <= 3 for row in sweep)  # ResNet-20: ~92%
    assert sweep[-1]["robust_accuracy"] == 0.0 and sweep[-1]["mean_confidence_drop"] > 0.5
    assert len(results["examples"]["label"]) == 3 and all(results["examples"]["success"])
    assert results["victim"]["title"] == "ResNet-20 (published CIFAR-10 weights)"
    assert_figures(out, report, "sweep.png", "examples.png")
    assert "| a larger ε gives a more successful attack (write-up) | holds: " in report
    assert f"| robust accuracy of an undefended model at ε = 8/255 | {sweep[-1]['robust_accuracy']:.3f} |" in report
    assert (out / "results.csv").read_text().count("\n") == 4 and "| ε |" in (out / "table.md").read_text()


def test_targeted_against_untargeted_on_a_small_cnn(tmp_path, data_root):
    out = tmp_path / "targeted"
    results, report = run_study(
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
    assert_figures(out, report, "comparison.png", "cumulative_success.png", "examples.png")
    iterations = f"untargeted {rows['untargeted']['mean_iterations']:.3f}; targeted: random "
    assert (
        "| untargeted attacks need fewer iterations than targeted ones (write-up) |" in report and iterations in report
    )


def test_adversarial_training(tmp_path, data_root):
    out = tmp_path / "adv"
    results, report = run_study(
        "adv-train",
        out,
        data_root,
        "width=8",
        "train_subset=500",
        "test_subset=60",
        "train.epochs=2",
        "weightings=0.5/0.5,0/1",
        "eval_steps=2,3",
    )
    variants = results["variants"]
    assert [v["variant"] for v in variants] == ["standard", "fgsm-rs 0.5/0.5", "fgsm-rs 0/1"]
    robust = ["clean accuracy", "FGSM accuracy", "PGD-2 accuracy", "PGD-3 accuracy"]
    ood = ["MSP AUROC (CIFAR-100)", "MSP AUPR-In (CIFAR-100)"]
    assert all(list(v["metrics"]) == robust + ood for v in variants)
    assert all(0 <= v["metrics"][m] <= v["metrics"]["clean accuracy"] for v in variants for m in robust)
    assert all(0 < v["metrics"][m] < 1 for v in variants for m in ood)
    assert variants[1]["objective"].startswith("adversarial fgsm-rs eps=0.0313725 alpha=0.0392157 steps=1")
    assert len({v["model"] for v in variants}) == 3 and len(list((out.parent / "models").glob("*.safetensors"))) == 3
    assert_figures(out, report, "robustness.png", "training.png")
    even = variants[1]["metrics"]["MSP AUROC (CIFAR-100)"]
    assert f"| 0.5/0.5: MSP AUROC (CIFAR-100) | {even:.3f} | 0.650 | {even - 0.65:+.3f} |" in report
    assert "| FGSM-RS 0/1: clean accuracy |" in report and "0.861" in report


def test_adversarial_training_over_seeds_with_the_targeted_comparison(tmp_path, data_root):
    """The write-up's targeted-vs-untargeted comparison on every trained model, two seeds each."""
    from dlapps.attacks import attack_arrays, summarize
    from dlapps.data import load_arrays
    from dlapps.models import from_checkpoint

    out = tmp_path / "adv"
    results, report = run_study(
        "adv-train", out, data_root, "width=8", "train_subset=500", "test_subset=60", "train.epochs=1",
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
    test = load_arrays("cifar10", "test", data_root).subset(60, 0)
    again = summarize(attack_arrays(model, test, method="bim", eps=4 / 255, alpha=1 / 255, steps=5))
    assert runs[2]["metrics"]["untargeted success rate"] == again["success_rate"]
    assert runs[2]["metrics"]["untargeted mean iterations to success"] == again["mean_iterations"]
    assert_figures(out, report, "targeting.png")
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
    result = dlapps("run", "fgsm", "--set", "epsilons=-1", "--out", str(tmp_path), data_root=data_root)
    assert_one_line_error(result, "epsilons: must be in [0, 255] grey levels")
