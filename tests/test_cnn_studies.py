"""residual-cnn and cam end to end through the command on tiny real subsets; cam reuses residual-cnn's model."""

import pytest

from dlapps.models import from_checkpoint, load_pretrained
from dlapps.report.io import read_json
from figures_check import assert_cam_grid_is_gradcam, assert_figures, assert_line, images, kept_figures, panel
from helpers import assert_one_line_error, dlapps_main, epochs_trained

# two epochs: a curve of one epoch is a single point, which curves_grid does not draw
TINY_CNN = ["--set", "blocks=1", "--set", "train_subset=256", "--set", "test_subset=128", "--set", "train.epochs=2"]
TINY_CAM = [
    "--set", "residual_cnn=quick", "--set", "residual_cnn_set=blocks=1,train_subset=256,test_subset=128,train.epochs=2",
    "--set", "methods=cam,gradcam,layercam", "--set", "faithfulness_images=8", "--set", "deletion_images=2",
    "--set", "deletion_steps=2", "--set", "grid_images=4",
]  # fmt: skip


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("cnn")
    models = root / "models"
    result = dlapps_main("run", "residual-cnn", "--profile", "quick", *TINY_CNN, "--out", str(root / "residual-cnn"),
                         "--models-dir", str(models), "--no-progress", data_root=data_root,
                         figures=root / "figures")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root, models


@pytest.mark.slow
def test_residual_cnn_writes_curves_table_and_report(cnn_run):
    root, models = cnn_run
    out = root / "residual-cnn"
    results = read_json(out / "results.json")
    assert {(r["layers"], r["skip"]) for r in results["runs"]} == {(8, False), (8, True)}
    assert all(0 <= r["test_acc"] <= 1 and len(r["history"]) == 2 for r in results["runs"])
    assert len(list(models.glob("*.safetensors"))) == 2
    report = (out / "report.md").read_text()
    drawn = assert_figures(out, report, kept_figures(root / "figures"), "curves_test.png", "curves_train.png",
                           "accuracy_vs_depth.png", "gradients_init.png")  # fmt: skip
    for skip, label in ((False, "plain"), (True, "with skip")):  # every line through this run's numbers
        (run,) = (r for r in results["runs"] if r["skip"] == skip)
        (summary,) = (s for s in results["summary"] if s["skip"] == skip)
        for split in ("test", "train"):
            curves = panel(drawn[f"curves_{split}.png"], "8 layers")
            assert_line(curves, label, [1, 2], [h[f"{split}_acc"] for h in run["history"]])
        assert_line(drawn["accuracy_vs_depth.png"].axes[0], label, [8], [summary["mean_test_acc"]])
    for name, norms in results["gradients"].items():  # weights only: a batch-normed net's biases are the head's
        assert_line(drawn["gradients_init.png"].axes[0], name, range(1, 9), norms["weight"])
    assert "| 8 |" in (out / "table.md").read_text()
    gap = 100 * (results["summary"][1]["mean_test_acc"] - results["summary"][0]["mean_test_acc"])
    assert f"skip − plain in points: 8 layers {gap:+.1f}" in report
    grads = results["gradients"]["ResNet-8"]
    assert len(grads["weight"]) == 8 and len(results["gradients"]["Plain-8"]["weight"]) == 8


@pytest.mark.slow
def test_cam_reuses_the_trained_cifar_model_and_writes_grids(cnn_run, data_root):
    root, models = cnn_run
    out = root / "cam"
    result = dlapps_main("run", "cam", "--profile", "quick", *TINY_CAM, "--out", str(out), "--models-dir", str(models),
                         "--no-progress", data_root=data_root, figures=root / "cam-figures",
                         epochs=root / "cam-epochs")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert epochs_trained(root / "cam-epochs") == []  # residual-cnn's model, not trained again
    results = read_json(out / "results.json")
    rows = {(r["model"].split(" ")[0], r["method"]): r for r in results["faithfulness"]}
    assert {model for model, _ in rows} == {"ResNet-8", "MobileNetV2"}
    assert len(rows) == 6
    for row in rows.values():
        assert 0 <= row["average_drop"] <= 1 and 0 <= row["increase_in_confidence"] <= 1
        assert 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
        assert row["images"] == 8 and row["deletion_images"] == 2
    assert results["models"]["model"]["accuracy"] > 0.5  # the shared MobileNetV2 knows these classes
    assert (
        results["models"]["model"]["layer"] == "features.18" and results["models"]["residual-cnn"]["layer"] == "layer3"
    )
    report = (out / "report.md").read_text()
    drawn = assert_figures(out, report, kept_figures(root / "cam-figures"), "residual-cnn_cam_grid.png",
                           "model_cam_grid.png", "residual-cnn_methods.png", "model_methods.png")  # fmt: skip
    (key,) = (r["key"] for r in read_json(root / "residual-cnn" / "results.json")["runs"] if r["skip"])
    resnet = from_checkpoint(models / f"{key}.safetensors").module
    mobilenet = load_pretrained("mobilenet_v2_imagenet", data_root)
    for name, model, layer in (("residual-cnn", resnet, "layer3"), ("model", mobilenet, "features.18")):
        grid = drawn[f"{name}_cam_grid.png"]  # CAM's maps: Grad-CAM's, for a head of global pooling and a linear layer
        assert_cam_grid_is_gradcam(grid, model, layer)
        columns = len(grid.axes) // 3
        methods = drawn[f"{name}_methods.png"].axes  # a row per image: the image, then each method's map over it
        assert len(methods) == columns * 4 and [a.get_title() for a in methods[:4]] == [
            "image",
            "cam",
            "gradcam",
            "layercam",
        ]
        for row in range(columns):
            assert (images(methods[4 * row])[0] == images(grid.axes[row])[0]).all()  # the same images
            cam_map = images(methods[4 * row + 1])[1]
            assert (cam_map == images(grid.axes[columns + row])[0]).all()  # the CAM column is the grid's map
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
    assert_one_line_error(dlapps_main("run", "cam", *args, "--out", str(tmp_path)), fragment)


@pytest.mark.slow
def test_cam_with_unfit_imagenet_weights_is_one_line(cnn_run, data_root, tmp_path):
    root, models = cnn_run
    bad = data_root / "weights" / "resnet20_cifar10_akamaster-12fca82f.th"
    result = dlapps_main("run", "cam", "--profile", "quick", *TINY_CAM, "--set", f"model.weights={bad}",
                    "--out", str(tmp_path), "--models-dir", str(models), data_root=data_root)  # fmt: skip
    assert_one_line_error(result, "does not fit MobileNetV2: missing features.0.0.weight")
    assert not (tmp_path / "results.json").exists() and not list(models.glob("*.tmp*"))
