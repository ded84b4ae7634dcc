"""A user's own data and model through the command line, as a new user would run them: each report names its
real dataset and model and carries no published figure that does not apply; bad input is one line, exit 2."""

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from dlapps.data import load_arrays
from dlapps.data.augment import convert_channels
from dlapps.report.io import read_json
from helpers import assert_one_line_error, dlapps, dlapps_main, python_path

NO_REFERENCE = "No published figure applies to this run"


def _settings(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


def _run(study: str, out, data_root, *pairs: str) -> tuple[dict, str]:
    result = dlapps_main("run", study, "--profile", "quick", "--no-progress", "--out", str(out), *_settings(*pairs),
                         data_root=data_root)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return read_json(out / "results.json"), (out / "report.md").read_text()


def _save_npz(path, arrays) -> None:
    images = arrays.images.permute(0, 2, 3, 1).numpy()
    np.savez(path, images=images, labels=arrays.labels.numpy(), classes=np.array(arrays.classes))


@pytest.mark.slow
def test_residual_mlp_on_a_grey_archive(tmp_path, data_root):
    """CIFAR-10 turned grey, given as a pair of archives: the MLPs learn it, and nothing is called MNIST."""
    for split, size in (("train", 2000), ("test", 500)):
        cifar = load_arrays("cifar10", split, data_root, limit=size)
        _save_npz(tmp_path / f"greycifar_{split}.npz", replace(cifar, images=convert_channels(cifar.images, 1)))
    results, report = _run(
        "residual-mlp", tmp_path / "mlp", data_root, f"dataset={tmp_path / 'greycifar_train.npz'}", "depths=2",
        "gradient_depth=2", "seeds=1", "train.epochs=2", "gradient_batches=1",
    )  # fmt: skip
    assert results["data"]["title"] == "greycifar" and results["data"]["train_size"] == 2000
    assert len(results["runs"]) == 3 and all(r["test_acc"] > 0.15 for r in results["runs"])  # above chance: 10 classes
    assert report.startswith("# Residual connections in deep MLPs on greycifar")
    assert "MNIST" not in report.replace("results are on MNIST;", "") and NO_REFERENCE in report
    assert "(0.93" not in report and "course write-up |" not in report  # no write-up column or numbers
    card = read_json(tmp_path / "mlp" / "results.json")["runs"][0]
    assert card["parameters"] == 1024 * 16 + 16 + 2 * (16 * 16 + 16) + 16 * 10 + 10  # 32x32 grey inputs


def _imagenette_layout(root, data_root) -> None:
    """torchvision's own Imagenette layout (imagenette2/<split>/<wnid>), linked to 30 shared images per class."""
    for wnid_folder in sorted((data_root / "imagenette" / "val").iterdir()):
        images = sorted(wnid_folder.iterdir())
        for split, chosen in (("train", images[:20]), ("val", images[20:30])):
            folder = root / "imagenette2" / split / wnid_folder.name
            folder.mkdir(parents=True)
            for image in chosen:
                (folder / image.name).symlink_to(image.resolve())  # a relative data root would break the link


@pytest.mark.slow
def test_ood_on_a_model_trained_by_dlapps_train_on_a_torchvision_dataset(tmp_path, data_root):
    root = tmp_path / "data"
    _imagenette_layout(root, data_root)
    digits = tmp_path / "digits"  # an image folder: MNIST digits as PNG files, one folder per class
    mnist = load_arrays("mnist", "test", data_root, limit=40)
    for i, (image, label) in enumerate(zip(mnist.images, mnist.labels, strict=True)):
        (digits / str(int(label))).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(digits / str(int(label)) / f"{i}.png")
    models = tmp_path / "models"
    trained = dlapps_main("train", "--model", "small_cnn", "--dataset", "torchvision:Imagenette", "--out", str(models),
                          "--no-progress", *_settings("image_size=32", "train.epochs=3"), data_root=root)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    checkpoint = next(models.glob("small_cnn-imagenette-*.safetensors"))
    results, report = _run(
        "ood", tmp_path / "ood", root, "dataset=torchvision:Imagenette", "image_size=32", f"model={checkpoint}",
        "with_baseline=false", f"ood_sets={data_root / 'cifar100_test.npz'},{digits}", "resize_ood=true",
        "detectors=msp,energy,knn", "fit_subset=200", 'detector={"knn": {"k": 10}}', "ood_subset=40",
    )  # fmt: skip
    assert list(results["models"]) == ["model"] and results["models"]["model"]["label"] == (
        f"small CNN trained on Imagenette (torchvision) ({checkpoint.name})"
    )
    assert set(results["data"]["ood"]) == {"cifar100_test", "digits"} and results["data"]["id"]["size"] == 100
    assert results["data"]["ood"]["digits"]["source"].endswith("resized to (3, 32, 32)")
    assert all(0 <= r["auroc"] <= 1 for r in results["metrics"]) and len(results["metrics"]) == 6
    assert report.startswith("# Out-of-distribution detection on Imagenette (torchvision)")
    assert NO_REFERENCE in report and report.count("CIFAR-10") == 1 and "OpenOOD v1.5" not in report  # the reason


@pytest.mark.slow
def test_cam_and_fgsm_on_a_users_torchvision_checkpoint_and_image_folder(tmp_path, data_root):
    """The shared MobileNetV2 weights named by path, as torchvision's architecture; Imagenette as a folder path.

    The folders are ImageNet WordNet ids, so the 10 classes find their places among the 1,000 outputs.
    """
    model = [
        f"dataset={data_root / 'imagenette' / 'val'}", "model=torchvision:mobilenet_v2",
        f"model.weights={data_root / 'weights' / 'mobilenet_v2_imagenet.safetensors'}",
        "model.mean=0.5,0.5,0.5", "model.std=0.5,0.5,0.5",
    ]  # fmt: skip
    results, report = _run(
        "cam", tmp_path / "cam", data_root, *model, "residual_cnn=none", "methods=gradcam,layercam",
        "faithfulness_images=8", "deletion_images=2", "deletion_steps=2", "grid_images=4",
    )  # fmt: skip
    explained = results["models"]["model"]
    assert (
        list(results["models"]) == ["model"] and explained["model"] == "MobileNetV2 (mobilenet_v2_imagenet.safetensors)"
    )
    assert explained["layer"] == "features" and explained["accuracy"] > 0.5  # it knows these classes
    assert report.startswith("# Class activation maps: MobileNetV2 (mobilenet_v2_imagenet.safetensors)")
    assert NO_REFERENCE in report and "0.2686" not in report and (tmp_path / "cam" / "model_cam_grid.png").is_file()
    results, report = _run(
        "fgsm", tmp_path / "fgsm", data_root, *model, "test_subset=6", "epsilons=1,4", "steps=2", "examples=2",
        "batch_size=6",
    )  # fmt: skip
    rows = results["rows"]
    assert [r["eps_255"] for r in rows] == [1, 4] and rows[1]["success_rate"] >= rows[0]["success_rate"]
    assert results["data"]["title"] == "imagenette"  # the folder "val" is named after its parent
    assert "on imagenette: MobileNetV2 (mobilenet_v2_imagenet.safetensors)" in report.splitlines()[0]
    assert NO_REFERENCE in report and "Madry" not in report


@pytest.mark.parametrize(
    ("pairs", "fragments"),
    [
        (["dataset=cifar11"], ["unknown dataset 'cifar11'; registered: mnist", "torchvision:SVHN"]),
        (["dataset={tmp}/notes.txt"], ["notes.txt is neither a .npz archive", "nor an image folder"]),
        (["dataset=cifar100"], ["has 10 outputs but CIFAR-100 has 100 classes", "set model.class_map"]),
        (["model=small_cnn", "model.weights={data}/weights/resnet20_cifar10_akamaster-12fca82f.th"],
         ["does not fit SmallCNN: missing features.0.weight"]),
        (["dataset=mnist"], ["MNIST has 1-channel images but ResNet-20", "takes 3 channels"]),
        (["model=resnet21"], ["unknown model 'resnet21'", "torchvision:<arch>"]),
    ],
)  # fmt: skip
def test_bad_data_and_models_are_one_line(pairs, fragments, tmp_path, data_root):
    (tmp_path / "notes.txt").write_text("not data")
    pairs = [p.format(tmp=tmp_path, data=data_root) for p in pairs]
    result = dlapps_main("run", "fgsm", "--profile", "quick", "--out", str(tmp_path / "out"), *_settings(*pairs),
                    data_root=data_root)  # fmt: skip
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out" / "results.json").exists()


PLUGIN = """
import torch
from dlapps.data import DATASETS, ImageArrays
from dlapps.data.sources import limited


@DATASETS.register("stripes", title="Stripes", splits=("train", "test"), num_classes=2, image_shape=(1, 8, 8))
def stripes(split, request):
    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.randint(0, 2, (400,), generator=generator)
    images = torch.randint(0, 100, (400, 1, 8, 8), generator=generator, dtype=torch.uint8)
    images[labels == 1, :, :, :4] += 150  # class "left": the left half is bright
    images[labels == 0, :, :, 4:] += 150
    return limited(ImageArrays(images, labels, ("right", "left"), f"stripes ({split})"), request)
"""


@pytest.mark.slow
def test_a_users_plug_in_module_on_the_command_line(tmp_path, data_root):
    """A dataset registered in the user's own module, named in $DLAPPS_PLUGINS, is a dataset like any other."""
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    plugin = {"DLAPPS_PLUGINS": "my_plugin", "PYTHONPATH": python_path(tmp_path)}
    listing = dlapps("datasets", data_root=data_root, **plugin)
    assert listing.returncode == 0 and "stripes" in listing.stdout, listing.stderr
    result = dlapps("run", "residual-mlp", "--profile", "quick", "--no-progress", "--out", str(tmp_path / "out"),
                    *_settings("dataset=stripes", "depths=2", "gradient_depth=2", "seeds=1", "train.epochs=3",
                               "train.batch_size=32", "train.lr=0.01", "gradient_batches=1"), data_root=data_root, **plugin)  # fmt: skip
    assert result.returncode == 0, result.stderr
    results = read_json(tmp_path / "out" / "results.json")
    assert results["data"]["title"] == "Stripes" and min(r["test_acc"] for r in results["runs"]) > 0.9
    broken = dlapps_main("studies", DLAPPS_PLUGINS="no_such_plugin")
    assert_one_line_error(broken, "plug-in module 'no_such_plugin'", "failed to import")
