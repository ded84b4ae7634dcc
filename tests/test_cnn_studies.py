"""residual-cnn and cam end to end through the CLI on tiny real subsets; cam reuses residual-cnn's model."""

import pytest

from dlapps.report.io import read_json
from helpers import assert_one_line_error, dlapps

pytestmark = pytest.mark.slow  # whole studies and commands, end to end

TINY_CNN = ["--set", "blocks=1", "--set", "train_subset=256", "--set", "test_subset=128", "--set", "train.epochs=1"]
TINY_CAM = [
    "--set", "residual_cnn=quick", "--set", "residual_cnn_set=blocks=1,train_subset=256,test_subset=128,train.epochs=1",
    "--set", "methods=cam,gradcam,layercam", "--set", "faithfulness_images=12", "--set", "deletion_images=4",
    "--set", "deletion_steps=2", "--set", "grid_images=4",
]  # fmt: skip


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("cnn")
    models = root / "models"
    result = dlapps("run", "residual-cnn", "--profile", "quick", *TINY_CNN, "--out", str(root / "residual-cnn"),
                    "--models-dir", str(models), "--no-progress", data_root=data_root)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root, models


def test_residual_cnn_writes_curves_table_and_report(cnn_run):
    root, models = cnn_run
    out = root / "residual-cnn"
    results = read_json(out / "results.json")
    assert {(r["layers"], r["skip"]) for r in results["runs"]} == {(8, False), (8, True)}
    assert all(0 <= r["test_acc"] <= 1 and len(r["history"]) == 1 for r in results["runs"])
    assert len(list(models.glob("*.safetensors"))) == 2
    report = (out / "report.md").read_text()
    for name in ("curves_test.png", "curves_train.png", "accuracy_vs_depth.png", "gradients_init.png"):
        assert (out / name).stat().st_size > 10_000 and f"({name})" in report
    assert "| 8 |" in (out / "table.md").read_text()
    gap = 100 * (results["summary"][1]["mean_test_acc"] - results["summary"][0]["mean_test_acc"])
    assert f"skip − plain in points: 8 layers {gap:+.1f}" in report
    grads = results["gradients"]["ResNet-8"]
    assert len(grads["weight"]) == 8 and len(results["gradients"]["Plain-8"]["weight"]) == 8


def test_cam_reuses_the_trained_cifar_model_and_writes_grids(cnn_run, data_root):
    root, models = cnn_run
    out = root / "cam"
    result = dlapps("run", "cam", "--profile", "quick", *TINY_CAM, "--out", str(out), "--models-dir", str(models),
                    "--no-progress", data_root=data_root)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list(models.glob("*.safetensors"))) == 2  # nothing was trained again
    results = read_json(out / "results.json")
    rows = {(r["model"].split(" ")[0], r["method"]): r for r in results["faithfulness"]}
    assert {model for model, _ in rows} == {"ResNet-8", "MobileNetV2"}
    assert len(rows) == 6
    for row in rows.values():
        assert 0 <= row["average_drop"] <= 1 and 0 <= row["increase_in_confidence"] <= 1
        assert 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
        assert row["images"] == 12 and row["deletion_images"] == 4
    assert results["models"]["model"]["accuracy"] > 0.5  # the shared MobileNetV2 knows these classes
    assert (
        results["models"]["model"]["layer"] == "features.18" and results["models"]["residual-cnn"]["layer"] == "layer3"
    )
    report = (out / "report.md").read_text()
    for name in ("residual-cnn_cam_grid.png", "model_cam_grid.png", "residual-cnn_methods.png", "model_methods.png"):
        assert (out / name).stat().st_size > 20_000 and f"({name})" in report
    gradcam = rows["MobileNetV2", "gradcam"]
    assert f"| gradcam average drop (lower is better) | {gradcam['average_drop']:.4f} | — | — | 0.2686 |" in report


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "methods=gradcam,fancycam"], "methods: unknown CAM method 'fancycam'"),
        (["--set", "model=vgg"], "unknown model 'vgg'"),
        (["--set", "residual_cnn=quick", "--set", "residual_cnn_set=blokcs=3"], "unknown config key 'blokcs'"),
        (["--set", "residual_cnn_set=blocks=3"], "residual_cnn_set changes the residual net"),
    ],
)
def test_cam_config_errors(args, fragment, tmp_path):
    assert_one_line_error(dlapps("run", "cam", *args, "--out", str(tmp_path)), fragment)


def test_cam_with_unfit_imagenet_weights_is_one_line(cnn_run, data_root, tmp_path):
    root, models = cnn_run
    bad = data_root / "weights" / "resnet20_cifar10_akamaster-12fca82f.th"
    result = dlapps("run", "cam", "--profile", "quick", *TINY_CAM, "--set", f"model.weights={bad}",
                    "--out", str(tmp_path), "--models-dir", str(models), data_root=data_root)  # fmt: skip
    assert_one_line_error(result, "does not fit MobileNetV2: missing features.0.0.weight")
    assert not (tmp_path / "results.json").exists() and not list(models.glob("*.tmp*"))
