"""Datasets and models as open axes: every way of naming them, the plug-in registries, and the guard that keeps
published figures out of reports whose setup is not theirs."""

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from dlapps.data import DATASETS, Dataset, find_datasets, get_dataset, load_arrays, normalization
from dlapps.data.sources import limited
from dlapps.errors import CheckpointError, ConfigError, DataError
from dlapps.experiments import STUDIES, RunContext
from dlapps.models import create_model, from_checkpoint, from_weights
from dlapps.models.classifier import align_labels
from dlapps.models.hooks import feature_layer
from dlapps.ood import DETECTORS, create_detector
from dlapps.ood.msp import MSP
from dlapps.train import ClassifierRecipe, TrainConfig, obtain_classifier
from dlapps.train.model_spec import ModelSpec

WNIDS = ("n01440764", "n02102040")  # tench, English springer: ImageNet classes 0 and 217


def _npz(path: Path, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> Path:
    np.savez(path, images=images, labels=labels, classes=np.array(classes))
    return path


def _grey(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 12, 12, 1), dtype=np.uint8), rng.integers(0, 3, n).astype(np.int64)


def _folder(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    for name, shapes in sizes.items():
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate(shapes):
            Image.new("RGB", (w, h), color=(40 * i, 100, 200)).save(root / name / f"{i}.png")
    return root


# --- naming a dataset ------------------------------------------------------------------------------------


def test_an_archive_pair_a_single_archive_and_bad_paths(tmp_path):
    for split, seed in (("train", 0), ("test", 1)):
        _npz(tmp_path / f"shapes_{split}.npz", *_grey(20, seed), ["a", "b", "c"])
    pair = get_dataset(str(tmp_path / "shapes_train.npz"))
    assert pair.splits == ("train", "test") and pair.title == "shapes" and pair.eval_split == "test"
    assert get_dataset(str(tmp_path / "shapes")).splits == ("train", "test")  # the stem names the pair too
    test = pair.load("test", limit=5, seed=2)
    assert test.image_shape == (1, 12, 12) and len(test) == 5 and test.classes == ("a", "b", "c")
    single = get_dataset(str(_npz(tmp_path / "alone.npz", *_grey(4, 3), ["a", "b", "c"])))
    assert single.splits == ("test",) and len(single.load("test")) == 4
    with pytest.raises(DataError, match="has no split 'train'; splits: test"):
        single.load("train")
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(DataError, match="notes.txt is neither a .npz archive .* nor an image folder"):
        get_dataset(str(tmp_path / "notes.txt"))
    with pytest.raises(DataError, match="missing.npz does not exist"):
        get_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="unknown dataset 'cifar11'; registered: mnist, cifar10.*torchvision:SVHN"):
        get_dataset("cifar11")


def test_image_folders_of_one_split_or_several(tmp_path):
    tree = _folder(tmp_path / "pets" / "train", {WNIDS[0]: [(30, 20)] * 3, WNIDS[1]: [(20, 30)] * 2})
    _folder(tmp_path / "pets" / "val", {WNIDS[0]: [(24, 24)], WNIDS[1]: [(24, 24)]})
    both = get_dataset(str(tmp_path / "pets"))
    assert both.splits == ("train", "val") and both.eval_split == "val" and both.title == "pets"
    assert both.label_spaces == {"imagenet": (0, 217)}  # WordNet-id folders are ImageNet classes
    assert both.load("val").image_shape == (3, 24, 24)  # same-size images load as they are
    with pytest.raises(DataError, match="images differ in size .* give an image size"):
        both.load("train")
    train = both.load("train", size=16)
    assert train.images.shape == (5, 3, 16, 16) and train.labels.tolist() == [0, 0, 0, 1, 1]
    one = get_dataset(str(tree))
    assert one.splits == ("train",) and one.title == "pets"  # a split folder is named after its parent
    assert len(get_dataset(str(tmp_path / "pets" / "val")).load("val")) == 2


def test_unreadable_and_empty_folders_are_one_line(tmp_path):
    root = _folder(tmp_path / "bad", {"a": [(8, 8)], "b": [(8, 8)]})
    (root / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken.png is not a readable image"):
        get_dataset(str(root)).load("bad")
    (root / "b" / "broken.png").unlink()
    (root / "c").mkdir()
    with pytest.raises(DataError, match="is not a readable image folder"):
        get_dataset(str(root)).load("bad")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no class folders"):
        get_dataset(str(tmp_path / "empty"))


def _mnist_layout(root: Path, folder: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, len(labels)) + labels.tobytes())


def test_any_torchvision_dataset_on_disk(tmp_path, mnist_test):
    """KMNIST is not registered: it is read through torchvision, by its class name in any letter case."""
    images, labels = mnist_test.images[:40, 0].numpy(), mnist_test.labels[:40].numpy().astype(np.uint8)
    _mnist_layout(tmp_path, "KMNIST", images, labels)
    for name in ("torchvision:KMNIST", "kmnist"):
        dataset = get_dataset(name)
        assert dataset.title == "KMNIST (torchvision)" and dataset.eval_split == "test"
        loaded = dataset.load("test", tmp_path)
        assert torch.equal(loaded.images[:, 0], torch.from_numpy(images)) and loaded.classes[0] == "o"
    with pytest.raises(DataError, match="torchvision SVHN/test is not readable under .*; add --download"):
        get_dataset("torchvision:SVHN").load("test", tmp_path)


def test_a_torchvision_dataset_read_image_by_image(tmp_path, data_root):
    """torchvision's Imagenette keeps no arrays: its images are decoded one by one, its classes are tuples."""
    for split in ("train", "val"):
        for wnid in WNIDS:
            folder = tmp_path / "imagenette2" / split / wnid
            folder.mkdir(parents=True)
            for source in sorted((data_root / "imagenette" / "val" / wnid).iterdir())[:3]:
                (folder / source.name).symlink_to(source.resolve())  # a relative data root would break the link
    loaded = get_dataset("torchvision:Imagenette").load("val", tmp_path, size=32)
    assert loaded.images.shape == (6, 3, 32, 32) and loaded.classes == ("tench", "English springer")


def test_measured_normalisation_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = _npz(tmp_path / "x_train.npz", *_grey(10, 0), ["a", "b", "c"])
    dataset, data = get_dataset(str(path)), load_arrays(str(path), "train")
    mean, std = normalization(dataset, data)
    values = data.images.double() / 255
    assert mean[0] == pytest.approx(values.mean().item()) and std[0] == pytest.approx(values.std(unbiased=False).item())
    assert (tmp_path / "cache" / "dlapps" / "stats.json").is_file()
    monkeypatch.setattr(type(data), "channel_stats", lambda self: pytest.fail("measured twice"))
    assert normalization(dataset, data) == (mean, std)
    assert normalization(get_dataset("cifar10"), data)[0] == (0.4914, 0.4822, 0.4465)  # published, not measured


def test_a_plug_in_dataset_is_one_decorated_reader(tmp_path):
    @DATASETS.register("test-tiles", title="Tiles", splits=("train", "test"), num_classes=2, image_shape=(1, 4, 4))
    def tiles(split, request):
        images = torch.full((6, 1, 4, 4), 7 if split == "train" else 9, dtype=torch.uint8)
        return limited(torchvision_free_arrays(images), request)

    try:
        assert isinstance(DATASETS["test-tiles"], Dataset) and get_dataset("test-tiles").title == "Tiles"
        assert load_arrays("test-tiles", "test", limit=2).images.unique().tolist() == [9]
        config = STUDIES["residual-mlp"].config("quick", ["dataset=test-tiles"])  # a study accepts it by name
        assert config.dataset == "test-tiles"
        assert any(row.name == "test-tiles" for row in find_datasets(tmp_path))
        with pytest.raises(ValueError, match="registered twice"):
            DATASETS.register("test-tiles", title="again", splits=())(tiles)
    finally:
        DATASETS._entries.pop("test-tiles")


def torchvision_free_arrays(images: torch.Tensor):
    from dlapps.data import ImageArrays

    return ImageArrays(images, torch.tensor([0, 1] * 3), ("x", "y"), "tiles")


def test_a_plug_in_detector_is_accepted_by_the_study_config():
    @DETECTORS.register("test-negative-msp")
    class NegativeMSP(MSP):
        def score_outputs(self, outputs):
            return -super().score_outputs(outputs)

    try:
        assert isinstance(create_detector("test-negative-msp"), NegativeMSP)
        config = STUDIES["ood"].config("quick", ["detectors=msp,test-negative-msp"])
        assert config.detectors == ("msp", "test-negative-msp")
        with pytest.raises(ConfigError, match="detectors: unknown detector 'gram'; known: msp, maxlogit"):
            STUDIES["ood"].config("quick", ["detectors=msp,gram"])
    finally:
        DETECTORS._entries.pop("test-negative-msp")


# --- naming a model --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, data_root):
    """A small CNN trained here (one epoch, 500 CIFAR-10 images): a dlapps checkpoint that describes itself."""
    out = tmp_path_factory.mktemp("models")
    recipe = ClassifierRecipe(
        "small_cnn", (("hidden", 32),), "cifar10", train=TrainConfig(epochs=1), train_subset=500, test_subset=100
    )
    splits = recipe.load_data(data_root)
    classifier, reused = obtain_classifier(recipe, out, torch.device("cpu"), *splits)
    assert not reused and obtain_classifier(recipe, out, torch.device("cpu"), *splits)[1]
    return classifier


def test_a_dlapps_checkpoint_is_a_model_by_its_path(tiny_checkpoint):
    path = Path(tiny_checkpoint.info["checkpoint"])
    loaded = from_checkpoint(path)
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(loaded.to("cpu").module(x), tiny_checkpoint.module(x))  # same weights, same layout
    assert loaded.classes[:2] == ("airplane", "automobile") and loaded.trained_on == "cifar10"
    assert loaded.title == f"small CNN trained on CIFAR-10 ({path.name})" and loaded.in_shape == (3, 32, 32)
    spec = ModelSpec(str(path))
    assert spec.kind == "checkpoint" and spec.input_size() == 32
    foreign = path.parent / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a checkpoint written by dlapps.*model=<architecture>"):
        from_checkpoint(foreign)


def test_images_the_model_cannot_take(tiny_checkpoint, data_root):
    cifar = get_dataset("cifar10")
    large = cifar.load("test", data_root, limit=4, size=64)
    with pytest.raises(
        DataError, match=r"small CNN .* \(made for \(3, 32, 32\)\) cannot take the \(3, 64, 64\) .* set image_size"
    ):
        align_labels(tiny_checkpoint, cifar, large)


def test_a_registered_architecture_with_a_users_weights(data_root):
    """The published ResNet-20 file, named as a file of the registered architecture: it scores as published."""
    weights = data_root / "weights" / "resnet20_cifar10_akamaster-12fca82f.th"
    imagenet = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    resnet = from_weights("resnet20", weights, num_classes=10, in_shape=(3, 32, 32), **imagenet)
    test = load_arrays("cifar10", "test", data_root, limit=500)
    accuracy = (resnet.module(test.images.float() / 255).argmax(1) == test.labels).float().mean().item()
    assert accuracy > 0.88 and resnet.title == "ResNet-20 (resnet20_cifar10_akamaster-12fca82f.th)"


def test_an_architecture_with_a_users_weights(tmp_path):
    torch.manual_seed(0)
    trained = create_model("torchvision:resnet18", num_classes=7, in_shape=(3, 64, 64))
    state = {f"module.{k}": v for k, v in trained.state_dict().items()}  # as DataParallel saves them
    torch.save(state, tmp_path / "mine.pth")
    loaded = from_weights("torchvision:resnet18", tmp_path / "mine.pth", num_classes=10, in_shape=(3, 64, 64))
    assert loaded.num_outputs == 7 and loaded.classes is None  # the file's head, not the dataset's class count
    assert loaded.module.normalize.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])  # ImageNet's
    assert "normalize" not in "".join(loaded.module.state_dict())  # torchvision's own keys
    x = torch.rand(2, 3, 64, 64)
    normalised = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    assert torch.allclose(loaded.module(x), trained.eval()(normalised), atol=1e-5)
    with pytest.raises(CheckpointError, match="does not fit SmallCNN"):
        from_weights("small_cnn", tmp_path / "mine.pth", num_classes=10, in_shape=(3, 64, 64))


def test_model_specs_validate_their_parts(tmp_path):
    assert ModelSpec("resnet20_cifar10").kind == "pretrained" and ModelSpec("resnet20_cifar10").is_published
    assert ModelSpec("small_cnn").kind == "train" and ModelSpec("torchvision:vgg11").kind == "train"
    (tmp_path / "w.pth").write_bytes(b"")
    assert ModelSpec("small_cnn", weights=str(tmp_path / "w.pth")).kind == "weights"
    study = STUDIES["fgsm"]
    with pytest.raises(ConfigError, match="model: give mean and std together"):
        study.config("quick", ["model.mean=0.5,0.5,0.5"])
    with pytest.raises(ConfigError, match="model.name: unknown model 'resnet21'; published: resnet20_cifar10"):
        study.config("quick", ["model=resnet21"])
    with pytest.raises(ConfigError, match="model.name: unknown torchvision architecture 'resnet5'"):
        study.config("quick", ["model=torchvision:resnet5"])
    with pytest.raises(ConfigError, match="weights file .*nothing.pth does not exist"):
        study.config("quick", ["model=small_cnn", f"model.weights={tmp_path / 'nothing.pth'}"])
    assert study.config("quick", ["model=mobilenet_v2_imagenet"]).model.name == "mobilenet_v2_imagenet"  # shorthand


def test_labels_follow_the_models_outputs(data_root, tmp_path):
    ctx = RunContext(out=tmp_path, device=torch.device("cpu"), data_root=data_root, show_progress=False)
    imagenette = get_dataset("imagenette")
    data = imagenette.load("val", data_root, limit=4, size=224)
    mobilenet = ctx.classifier(ModelSpec("mobilenet_v2_imagenet"), data, dataset=imagenette)
    aligned = align_labels(mobilenet, imagenette, data)
    assert set(aligned.labels.tolist()) <= {0, 217, 482, 491, 497, 566, 569, 571, 574, 701}
    assert aligned.classes[0] == "tench" and len(aligned.classes) == 1000
    mapped = align_labels(mobilenet, imagenette, data, class_map=tuple(range(10, 20)))
    assert torch.equal(mapped.labels, data.labels + 10)
    with pytest.raises(DataError, match="class_map must give one output .* for each of the 10 classes"):
        align_labels(mobilenet, imagenette, data, class_map=(1, 2))
    cifar100 = get_dataset("cifar100")
    resnet = ctx.classifier(ModelSpec("resnet20_cifar10"), None, dataset=cifar100)
    with pytest.raises(DataError, match="has 10 outputs but CIFAR-100 has 100 classes .* set model.class_map"):
        align_labels(resnet, cifar100, cifar100.load("test", data_root, limit=4))
    mnist = get_dataset("mnist")
    with pytest.raises(DataError, match="MNIST has 1-channel images but ResNet-20 .* takes 3 channels"):
        align_labels(resnet, mnist, mnist.load("test", data_root, limit=4))
    assert feature_layer(resnet.module, torch.rand(1, 3, 32, 32)) == "layer3"
    assert feature_layer(mobilenet.module, torch.rand(1, 3, 64, 64)) == "features"  # ends with features.18


# --- published figures only for their own setup ----------------------------------------------------------


OTHER_DATA = {
    "residual-mlp": ["dataset=cifar10"],
    "residual-cnn": ["dataset=mnist"],
    "cam": ["dataset=cifar10", "model=resnet20_cifar10"],
    "ood": ["dataset=cifar100", "model=small_cnn"],
    "fgsm": ["dataset=mnist", "model=small_cnn"],
    "targeted": ["dataset=mnist", "model=small_cnn"],
    "adv-train": ["dataset=mnist"],
}


@pytest.mark.parametrize("name", sorted(OTHER_DATA))
def test_no_reference_row_for_another_setup(name):
    study = STUDIES[name]
    assert study.no_reference(study.config("quick")) is None  # the course setup is the reference's
    other = study.config("quick", OTHER_DATA[name])
    reason = study.no_reference(other)
    assert reason and "this run" in reason
    assert study.compare(other, {}) == []  # decided from the setup, before any result is read


def test_importing_dlapps_leaves_the_matplotlib_backend_alone():
    """Figures are drawn without pyplot, so a notebook user's backend is theirs (and nothing global is touched)."""
    code = (
        "import matplotlib; matplotlib.use('svg'); import dlapps.experiments, dlapps.ood.plots, dlapps.report.figures; "
        "import matplotlib.pyplot as plt; print(matplotlib.get_backend(), len(plt.get_fignums()))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["svg", "0"], result.stderr
