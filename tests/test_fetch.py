"""Fetching the course's data and weights: stand-in files served on the loopback address, as a mirror of the
published addresses ($DLAPPS_DOWNLOAD_MIRROR), with their own checksums given by a plug-in."""

import gzip
import hashlib
import io
import json
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlapps.data import load_arrays
from dlapps.data.downloads import RESOURCES, _install_imagenette
from dlapps.experiments import STUDIES
from dlapps.models import create_model, load_pretrained
from dlapps.models.pretrained import downloadable
from helpers import assert_one_line_error, dlapps, dlapps_main, epochs_trained, python_path

WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042", "n03425413",
         "n03445777", "n03888605")  # fmt: skip
PLUGIN = """
import json, os
from dataclasses import fields, replace
from dlapps.data.downloads import RESOURCES
from dlapps.models import PRETRAINED

for name, files in json.loads(open(os.environ["STANDINS"]).read()).items():
    if name in PRETRAINED:  # published weights: their checksum and size are the stand-in's
        spec, [(checksum, size)] = PRETRAINED[name], files
        info = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in ("name", "build")}
        PRETRAINED.register(name, replace=True, **{**info, "sha256": checksum.split(":")[1], "size": size})(spec.build)
        continue
    resource = RESOURCES[name]
    downloads = tuple(replace(d, checksum=c, size=n) for d, (c, n) in zip(resource.downloads, files, strict=True))
    RESOURCES.register(name, replace=True, title=resource.title, downloads=downloads,
                       provides=resource.provides)(resource.install)
"""


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _cifar_records(images: np.ndarray, labels: np.ndarray, label_bytes: int) -> bytes:
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    prefix = np.repeat(labels[:, None], label_bytes, axis=1)  # (coarse,) fine: the last byte is the class
    return np.concatenate([prefix, planes], axis=1).astype(np.uint8).tobytes()


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _stand_ins() -> tuple[dict[str, list[tuple[str, bytes]]], dict[str, np.ndarray]]:
    """Small files in each published format, by resource (url, bytes), and the arrays they hold."""
    rng = np.random.default_rng(0)
    mnist = {s: (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)) for s, n in (("train", 30), ("t10k", 12))}
    cifar10 = {
        s: (rng.integers(0, 256, (n, 32, 32, 3)), rng.integers(0, 10, n)) for s, n in (("train", 25), ("test", 10))
    }
    cifar100 = {s: (rng.integers(0, 256, (n, 32, 32, 3)), rng.integers(0, 100, n)) for s, n in (("train", 20), ("test", 8))}  # fmt: skip
    batches = {f"data_batch_{i}.bin": _cifar_records(cifar10["train"][0][5 * i - 5 : 5 * i],
                                                      cifar10["train"][1][5 * i - 5 : 5 * i], 1) for i in range(1, 6)}  # fmt: skip
    torch.manual_seed(0)
    resnet20 = create_model("resnet20", num_classes=10, in_shape=(3, 32, 32))
    state = io.BytesIO()
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet20.state_dict().items()}}, state)
    files = {
        "mnist": [(RESOURCES["mnist"].downloads[i].url, _idx(a)) for i, a in
                  enumerate((mnist["train"][0], mnist["train"][1], mnist["t10k"][0], mnist["t10k"][1]))],
        "cifar10": [(RESOURCES["cifar10"].downloads[0].url, _tar({
            **{f"cifar-10-batches-bin/{k}": v for k, v in batches.items()},
            "cifar-10-batches-bin/test_batch.bin": _cifar_records(*cifar10["test"], 1),
            "cifar-10-batches-bin/batches.meta.txt": b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n",
        }))],
        "cifar100": [(RESOURCES["cifar100"].downloads[0].url, _tar({
            "cifar-100-binary/train.bin": _cifar_records(*cifar100["train"], 2),
            "cifar-100-binary/test.bin": _cifar_records(*cifar100["test"], 2),
            "cifar-100-binary/fine_label_names.txt": "\n".join(f"class{i:02d}" for i in range(100)).encode(),
        }))],
        "imagenette": [(RESOURCES["imagenette"].downloads[0].url, _tar({
            f"imagenette2-320/{split}/{wnid}/{i}.JPEG": _jpeg(i) for split in ("train", "val") for wnid in WNIDS
            for i in range(2)} | {"imagenette2-320/noisy_imagenette.csv": b"path,label\n"}))],
        "resnet20_cifar10": [(downloadable()["resnet20_cifar10"].downloads[0].url, state.getvalue())],
        "resnet18_imagenet": [(downloadable()["resnet18_imagenet"].downloads[0].url, b"stand-in weights" * 64)],
    }  # fmt: skip
    arrays = {"mnist_test": mnist["t10k"][0], "cifar10_train": cifar10["train"][0], "cifar10_test": cifar10["test"][0],
              "cifar100_test": cifar100["test"][0], "cifar100_test_labels": cifar100["test"][1]}  # fmt: skip
    return files, arrays


class Mirror:
    """An HTTP server on 127.0.0.1 serving ``folder``, counting requests; ``faults`` maps a path to ``corrupt``
    (other bytes of the same length) or ``cut`` (the connection closes half way)."""

    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        self.faults: dict[str, str] = {}
        mirror = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirror.requests.append(self.path)
                fault = mirror.faults.get(self.path)
                if fault is None:
                    return super().do_GET()
                data = Path(self.translate_path(self.path)).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(bytes(255 - b for b in data) if fault == "corrupt" else data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def path(self, url: str) -> str:
        return "/" + url.split("://", 1)[1]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The stand-ins under <mirror>/<host>/<path>, a plug-in giving their checksums, and the environment."""
    folder = tmp_path_factory.mktemp("mirror")
    files, arrays = _stand_ins()
    sums = {}
    for name, items in files.items():
        for url, data in items:
            target = folder / url.split("://", 1)[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        sums[name] = [(f"sha256:{hashlib.sha256(d).hexdigest()}", len(d)) for _, d in items]
    (folder / "standins.json").write_text(json.dumps(sums))
    (folder / "standins.py").write_text(PLUGIN)
    server = Mirror(folder)
    env = {"DLAPPS_DOWNLOAD_MIRROR": server.url, "DLAPPS_PLUGINS": "standins", "PYTHONPATH": python_path(folder),
           "STANDINS": str(folder / "standins.json")}  # fmt: skip
    yield server, env, files, arrays
    server.server.shutdown()


def _left_behind(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.slow
def test_fetch_refuses_corrupt_and_cut_downloads_then_installs_everything_once(mirror, tmp_path):
    server, env, files, arrays = mirror
    root = tmp_path / "data"
    cifar10 = server.path(files["cifar10"][0][0])
    server.faults[cifar10] = "corrupt"
    result = dlapps("fetch", "--only", "cifar10", "--data-root", str(root), "--no-progress", **env)
    assert_one_line_error(result, "does not match its published sha256 checksum", "the file was removed")
    assert _left_behind(root) == []  # nothing half-written, nothing refused kept
    server.faults = {server.path(files["mnist"][2][0]): "cut"}
    result = dlapps("fetch", "--only", "mnist", "--data-root", str(root), "--no-progress", **env)
    assert_one_line_error(result, "t10k-images-idx3-ubyte.gz", "nothing was kept")
    assert _left_behind(root) == []
    server.faults = {}

    result = dlapps("fetch", "--data-root", str(root), "--no-progress", **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("fetched") == 6
    mnist, c10_train, c10_test = (load_arrays(n, s, root) for n, s in (("mnist", "test"), ("cifar10", "train"),
                                                                          ("cifar10", "test")))  # fmt: skip
    assert torch.equal(mnist.images, torch.from_numpy(arrays["mnist_test"][:, None].astype(np.uint8)))
    assert torch.equal(c10_train.images.permute(0, 2, 3, 1), torch.from_numpy(arrays["cifar10_train"].astype(np.uint8)))
    assert torch.equal(c10_test.images.permute(0, 2, 3, 1), torch.from_numpy(arrays["cifar10_test"].astype(np.uint8)))
    assert c10_test.classes[0] == "airplane" and len(c10_test.classes) == 10
    c100 = load_arrays("cifar100", "test", root)
    assert c100.labels.tolist() == arrays["cifar100_test_labels"].tolist() and c100.classes[7] == "class07"
    imagenette = load_arrays("imagenette", "val", root, size=32)
    assert len(imagenette) == 20 and imagenette.classes == WNIDS
    model = load_pretrained("resnet20_cifar10", root)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert (root / "weights" / "resnet18-f37072fd.pth").read_bytes() == files["resnet18_imagenet"][0][1]
    assert not (root / ".downloads").exists() and not list(root.rglob("*.part*"))

    asked = len(server.requests)
    again = dlapps("fetch", "--data-root", str(root), "--no-progress", **env)
    assert again.returncode == 0 and again.stdout.count("already there") == 6
    assert len(server.requests) == asked  # the second fetch downloads nothing


@pytest.mark.slow
def test_a_run_with_download_fetches_only_what_it_reads(mirror, tmp_path):
    server, env, files, _ = mirror
    root, out = tmp_path / "data", tmp_path / "fgsm"
    asked = len(server.requests)
    result = dlapps("run", "fgsm", "--download", "--data-root", str(root), "--out", str(out), "--no-progress",
                    "--set", "epsilons=1,8", "--set", "examples=2", **env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    fetched = sorted(server.requests[asked:])
    assert fetched == sorted(server.path(url) for name in ("cifar10", "resnet20_cifar10") for url, _ in files[name])
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["test_size"] == 10  # the stand-in test split, attacked whole


def test_without_the_data_a_run_stops_at_once_listing_all_it_lacks(tmp_path):
    epochs = tmp_path / "epochs"
    result = dlapps_main("reproduce", "--profile", "quick", "--out", str(tmp_path / "out"),
                         data_root=tmp_path / "empty", epochs=epochs)  # fmt: skip
    assert_one_line_error(result, "missing from the data root", "MNIST train split", "CIFAR-10 test split",
                          "CIFAR-100 test split", "Imagenette val split", "ResNet-20 weights", "ResNet-18 weights",
                          "dlapps fetch --data-root", "--only cifar100", "or add --download")  # fmt: skip
    assert epochs_trained(epochs) == [] and not (tmp_path / "out").exists()  # stopped before any study


def test_the_cam_study_explains_with_resnet18_where_mobilenet_is_absent(tmp_path, data_root):
    cam = STUDIES["cam"]
    (tmp_path / "weights").mkdir()
    spec, why = cam.model(cam.config("quick"), tmp_path)
    assert spec.name == "resnet18_imagenet" and "MobileNetV2's weights file is not in the data root" in why
    assert "ResNet-18 weights (resnet18_imagenet)" in [n.what for n in cam.needs(cam.config("quick"), tmp_path)]
    assert cam.model(cam.config("quick"), data_root) == (cam.config("quick").model, None)  # where it is, it runs
    assert cam.model(cam.config("quick", ["stand_in=none"]), tmp_path)[0].name == "mobilenet_v2_imagenet"


@pytest.mark.slow
def test_cam_report_says_resnet18_ran_in_place_of_mobilenet(tmp_path, data_root):
    """End to end, with torchvision's ResNet-18 layout (random weights in the published file's place)."""
    import torchvision

    root = tmp_path / "data"
    (root / "weights").mkdir(parents=True)
    (root / "imagenette").symlink_to((data_root / "imagenette").resolve())
    torch.save(torchvision.models.resnet18().state_dict(), root / "weights" / "resnet18-f37072fd.pth")
    out = tmp_path / "cam"
    result = dlapps_main("run", "cam", "--profile", "quick", "--out", str(out), "--no-progress", "--set",
                         "residual_cnn=none", "--set", "methods=gradcam", "--set", "faithfulness_images=4",
                         "--set", "deletion_images=2", "--set", "grid_images=2", data_root=root)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    assert report.startswith("# Class activation maps: ResNet-18")
    assert (
        "MobileNetV2's weights file is not in the data root" in report
        and "the published ResNet-18, 69.76% top-1" in report
    )


def test_an_archive_that_writes_outside_its_folder_is_refused(tmp_path):
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(_tar({"imagenette2-320/val/n01440764/a.JPEG": _jpeg(0), "../../escaped.JPEG": _jpeg(1)}))
    with pytest.raises(tarfile.TarError):
        _install_imagenette([archive], tmp_path / "root")
    assert not (tmp_path / "escaped.JPEG").exists() and not list(tmp_path.parent.glob("escaped*"))


def test_fetch_names_an_unknown_resource(tmp_path):
    result = dlapps_main("fetch", "--only", "cifar11", data_root=tmp_path)
    assert_one_line_error(result, "unknown downloadable resource 'cifar11'; known: mnist, cifar10")
    assert not list(tmp_path.iterdir())  # nothing was fetched
