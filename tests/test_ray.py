"""A study's runs and an audit's sections as tasks on a Ray cluster: what one thread computes locally, bit for bit,
on a two-node cluster and after one of its nodes is lost mid-study; a run resumed from its part trained before;
faults and bad input in one line."""

import json
import os
import socket
import sys

import pytest
import torch

from dlapps.errors import ClusterError, TrainingDiverged
from dlapps.experiments.base import RunContext
from dlapps.train import ClassifierRecipe, Execution, TrainConfig, Training, obtain_classifier
from dlapps.train.ray_cluster import connect, train_on_ray
from dlapps.train.recipes import checkpoint_path
from dlapps.train.relayed_progress import ProgressRelay
from dlapps.train.side_by_side import is_trained
from dlapps.train.trainer import cross_entropy_step
from helpers import assert_one_line_error, dlapps_main

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

CPU = torch.device("cpu")
# residual-mlp at its quick profile, made small: 4 runs (plain and residual, depth 2 and 4) of a second or two
SMALL = ["--profile", "quick", "--no-progress"] + [
    item
    for setting in (
        "depths=2,4",
        "seeds=1",
        "layers_per_block=1",
        "train.epochs=6",  # a few seconds a run, so that a node is lost while its run trains
        "train_subset=60000",
        "test_subset=500",
        "gradient_depth=2",
        "gradient_batches=1",
    )  # fmt: skip
    for item in ("--set", setting)
]


@pytest.fixture
def cluster():
    """Two nodes of one CPU each on this machine; a lost node is noticed within about two seconds."""
    checks = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 0}
    started = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": checks})
    started.add_node(num_cpus=1)
    started.wait_for_nodes()
    yield started
    ray.shutdown()
    started.shutdown()


@pytest.fixture
def local_ray():
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_study(tmp_path_factory, data_root):
    """The small study run locally, one run after the other on one thread: its results and its models."""
    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = dlapps_main("run", "residual-mlp", "--out", str(out / "study"), "--workers", "1", *SMALL,
                             data_root=data_root)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert result.returncode == 0, result.stderr
    return out


def _assert_same_runs(out, reference) -> None:
    """The same runs in the results (accuracies and losses of every epoch) and the same checkpoints (weights,
    optimizer state) as the reference study's."""

    def runs(folder):
        found = json.loads((folder / "study" / "results.json").read_text())["runs"]
        return [{**r, "history": [{k: v for k, v in h.items() if "seconds" not in k} for h in r["history"]]}
                for r in ({k: v for k, v in r.items() if "seconds" not in k} for r in found)]  # fmt: skip

    assert runs(out) == runs(reference) and len(runs(out)) == 4
    checkpoints = sorted(p.name for p in (reference / "models").glob("*.safetensors"))
    assert sorted(p.name for p in (out / "models").glob("*.safetensors")) == checkpoints
    from safetensors.torch import load_file

    for name in checkpoints:
        ours, theirs = load_file(out / "models" / name), load_file(reference / "models" / name)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.slow
def test_a_study_on_a_two_node_ray_cluster_trains_the_runs_of_one_thread_locally(
    tmp_path, cluster, local_study, data_root
):
    args = ("run", "residual-mlp", "--out", str(tmp_path / "study"), "--executor", "ray")
    result = dlapps_main(*args, "--ray-address", cluster.address, *SMALL, data_root=data_root)
    assert result.returncode == 0, result.stderr
    _assert_same_runs(tmp_path, local_study)
    # a rerun (say, of a driver killed after these runs) finds them all in the model folder
    again = dlapps_main(*args, "--ray-address", cluster.address, *SMALL, data_root=data_root)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "study" / "results.json").read_text())["cached_runs"] == 4
    # runs on CUDA ask the cluster for a GPU, and this one has none
    with pytest.raises(ClusterError, match="the runs ask for CUDA but the Ray cluster at .* has no GPU"):
        RunContext(out=tmp_path / "gpu", device=torch.device("cuda"), executor="ray", ray_address=cluster.address)


@pytest.mark.slow
def test_a_study_survives_the_loss_of_a_node_mid_study_with_the_same_numbers(
    tmp_path, monkeypatch, cluster, local_study, data_root
):
    """Once both nodes train a run (each has one CPU), the second node's raylet is killed: its run (and any Ray had
    already handed its worker) is trained again on the first node, and the study ends with the numbers of the
    local runs."""
    (other,) = cluster.worker_nodes
    started: list[int] = []
    show = ProgressRelay._show

    def kill_when_both_nodes_train(relay, kind, run, *values):
        if kind == "add":
            started.append(run)
            if len(set(started)) == 2 and len(started) == 2:
                other.kill_raylet()
        return show(relay, kind, run, *values)

    monkeypatch.setattr(ProgressRelay, "_show", kill_when_both_nodes_train)
    result = dlapps_main("run", "residual-mlp", "--out", str(tmp_path / "study"), "--executor", "ray",
                         "--ray-address", cluster.address, *SMALL, data_root=data_root)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(started) > len(set(started)) == 4  # the runs of the lost node (one, or more) started again
    _assert_same_runs(tmp_path, local_study)


class _WorkerDies:
    """A step loss whose worker process dies at its first step (as one that runs out of memory is killed); in
    the driver, which measures the work of each run on a step, it is cross-entropy."""

    def __init__(self) -> None:
        self.driver = os.getpid()

    def __call__(self, model, inputs, labels):
        if os.getpid() != self.driver:
            os._exit(1)
        return cross_entropy_step(model, inputs, labels)


class _Recorded:
    """The part of rich's Progress that the Ray executor uses, recording the bars and descriptions it shows."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.completed: list[float] = []  # where each bar started
        self.descriptions: list[str] = []
        self.live: set[int] = set()

    def add_task(self, description: str, total: float | None = None, completed: float = 0) -> int:
        self.added.append(description)
        self.completed.append(completed)
        self.live.add(len(self.added))
        return len(self.added)

    def advance(self, task: int, advance: float = 1) -> None:
        pass

    def update(self, task: int, *, completed: float, description: str) -> None:
        self.descriptions.append(description)

    def remove_task(self, task: int) -> None:
        self.live.remove(task)


def _recipe(depth: int, lr: float = 5e-3, objective: str = "cross-entropy") -> ClassifierRecipe:
    return ClassifierRecipe(
        "residual_mlp", (("depth", depth), ("width", 16)), "mnist", train=TrainConfig(epochs=1, lr=lr),
        train_subset=1000, test_subset=200, augment=False, objective=objective,
    )  # fmt: skip


@pytest.mark.slow
def test_a_run_that_fails_is_reported_after_the_others_are_kept(tmp_path, local_ray, mnist_train, mnist_test):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests
    connect(None, CPU)  # a Ray instance started on this machine
    fine, dying = _recipe(2), _recipe(4, objective="dies")
    options = {"device": CPU, "train": mnist_train, "test": mnist_test, "execution": Execution()}
    progress = _Recorded()
    with pytest.raises(ClusterError) as raised:
        train_on_ray([Training("fine", fine), Training("dying", dying, _WorkerDies())], tmp_path, **options,
                     progress=progress)  # fmt: skip
    # a bar for the run in training (the dying one's word may die with it), and the runs done, running and left
    assert progress.added.count("fine") == 1 and set(progress.added) <= {"Ray", "fine", "dying"}
    assert progress.descriptions[-1] == "Ray: 2 runs done, 0 running, 0 waiting" and not progress.live
    message = str(raised.value)
    assert message.startswith("run dying failed on the Ray cluster: ") and "\n" not in message
    assert message.endswith("(1 of the 2 runs finished and are kept)")
    assert is_trained(fine, tmp_path) and not is_trained(dying, tmp_path)
    # a run's own error is raised as it is, once the others are done
    diverging = _recipe(2, lr=1e12)
    with pytest.raises(TrainingDiverged, match="training diverged"):
        train_on_ray([Training("diverging", diverging), Training("other", _recipe(6))], tmp_path, **options)
    assert is_trained(_recipe(6), tmp_path)


class _Interrupted(Exception):
    pass


class _StopsAt:
    """Cross-entropy that stops the training at its ``step``-th step (as a driver that is killed)."""

    def __init__(self, step: int) -> None:
        self.step, self.taken = step, 0

    def __call__(self, model, inputs, labels):
        self.taken += 1
        if self.taken == self.step:
            raise _Interrupted
        return cross_entropy_step(model, inputs, labels)


@pytest.mark.slow
def test_a_run_stopped_locally_resumes_in_a_task_from_its_last_epoch(tmp_path, local_ray, mnist_train, mnist_test):
    recipe = ClassifierRecipe(
        "residual_mlp", (("depth", 4), ("width", 16)), "mnist", train=TrainConfig(epochs=3, batch_size=100),
        train_subset=1000, test_subset=200, augment=False,
    )  # fmt: skip
    options = {"device": CPU, "train": mnist_train, "test": mnist_test, "execution": Execution()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the reference, one thread uninterrupted; and a run stopped in its second epoch
        obtain_classifier(recipe, tmp_path / "whole", CPU, mnist_train, mnist_test)
        with pytest.raises(_Interrupted):
            obtain_classifier(recipe, tmp_path / "resumed", CPU, mnist_train, mnist_test, step_loss=_StopsAt(15))
    finally:
        torch.set_num_threads(threads)
    assert not is_trained(recipe, tmp_path / "resumed")
    connect(None, CPU)
    progress = _Recorded()
    assert train_on_ray([Training("resumed", recipe)], tmp_path / "resumed", **options, progress=progress)
    assert progress.completed[progress.added.index("resumed")] == 10  # the task began at epoch 2 (10 steps done)
    from safetensors.torch import load_file

    ours = load_file(checkpoint_path(recipe, tmp_path / "resumed"))
    reference = load_file(checkpoint_path(recipe, tmp_path / "whole"))
    assert ours.keys() == reference.keys() and all(torch.equal(ours[k], reference[k]) for k in ours)


# An audit small enough for seconds a model, with every section
TINY_AUDIT = [
    item
    for setting in (
        "test_subset=200",
        "faithfulness_images=20",
        "deletion_images=5",
        "deletion_steps=4",
        "sanity_images=5",
        "scorecam_images=5",
        "id_subset=100",
        "ood_subset=100",
        "fit_subset=200",
        "corruption_images=20",
        "corruptions=gaussian_noise,fog",
        "severities=1,3",
        "attack_images=20",
        "ensemble_steps=5",
        "square_queries=20",
        "epsilons=2,8",
        "resamples=100",
        "detectors=msp,energy,knn,vim",
        "model.train.epochs=2",
        "model.train_subset=2000",
        "model.train.lr=0.01",
        "model.augment=false",
    )  # fmt: skip
    for item in ("--set", setting)
]
NET = """
import os

from torch import nn

DRIVER = {driver}  # the process it must not die in (None: none)


class Net(nn.Module):
    def __init__(self, num_classes, channels):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        if DRIVER is not None and x.requires_grad and os.getpid() != DRIVER:
            os._exit(1)  # as a worker that runs out of memory is killed: in an attack, in a Ray worker
        return self.head(self.features(x).mean((2, 3)))


def build(num_classes=10, in_shape=(3, 32, 32)):
    return Net(num_classes, in_shape[0])
"""


def _audit(out, *args, data_root):
    threads = torch.get_num_threads()
    if "--executor" not in args:  # the reference: one thread locally
        torch.set_num_threads(1)
    try:
        result = dlapps_main("audit", "--data", "cifar10", "--out", str(out), "--no-progress", *args, *TINY_AUDIT,
                             data_root=data_root)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return result


def _records(folder):
    """Every cached record of an audit's folder, by name (its key less the fingerprint, which holds the path of a
    model trained here), as JSON text."""
    return sorted((path.stem.rsplit("-", 1)[0], path.read_text()) for path in (folder / "runs").glob("*.json"))


@pytest.mark.slow
def test_an_audit_of_two_models_on_a_two_node_cluster_is_the_local_one_thread_audit(
    tmp_path, monkeypatch, cluster, data_root
):
    """A comparison of the published ResNet-20 and a model of the user's file, trained here (a task, too): each
    section of each model is a task. Once both nodes run a section (the two robustness sections, the longest,
    go first), the second node's raylet is killed, and its section runs again on the first. The results, every
    record (each attack's too) and the trained model are those of the audit on one thread locally."""
    net = tmp_path / "net.py"
    net.write_text(NET.format(driver=None))
    models = ("--model", "resnet20_cifar10", "--model", f"{net}:build")
    local = _audit(tmp_path / "local" / "audit", *models, data_root=data_root)  # its models in local/models
    assert local.returncode == 0, local.stderr
    (other,) = cluster.worker_nodes
    started: list[str] = []
    show = ProgressRelay._show

    def kill_when_both_nodes_run_a_section(relay, kind, run, *values):
        if kind == "add" and " of " in relay.labels[run]:
            started.append(relay.labels[run])
            if len(started) == 2 and len(set(started)) == 2:
                other.kill_raylet()
        return show(relay, kind, run, *values)

    monkeypatch.setattr(ProgressRelay, "_show", kill_when_both_nodes_run_a_section)
    args = (*models, "--executor", "ray", "--ray-address", cluster.address)
    on_ray = _audit(tmp_path / "ray" / "audit", *args, data_root=data_root)
    assert on_ray.returncode == 0, on_ray.stderr
    assert started[0].startswith("robustness of ") and started[1].startswith("robustness of ")
    assert len(started) > len(set(started)) == 10  # the lost node's section started again
    for label in ("resnet20_cifar10", "net"):
        ours, theirs = (json.loads((tmp_path / run / "audit" / label / "results.json").read_text())
                        for run in ("ray", "local"))  # fmt: skip
        for section in ("accuracy", "explanations", "ood", "corruptions", "robustness", "summary"):
            assert json.dumps(ours[section]) == json.dumps(theirs[section]), (label, section)
        assert ours["cached_runs"] == 0  # computed by the tasks, not found from before
        records = _records(tmp_path / "ray" / "audit" / label)
        assert records == _records(tmp_path / "local" / "audit" / label)
        assert sum(name.startswith("audit-attack-") for name, _ in records) >= 4  # relayed as each finished
    (trained,) = (tmp_path / "ray" / "models").glob("*.safetensors")
    from safetensors.torch import load_file

    ours, theirs = load_file(trained), load_file(tmp_path / "local" / "models" / trained.name)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # a rerun (a driver killed after the tasks finished) finds every record in the cache
    again = _audit(tmp_path / "ray" / "audit", *args, data_root=data_root)
    assert again.returncode == 0, again.stderr
    results = json.loads((tmp_path / "ray" / "audit" / "net" / "results.json").read_text())
    assert results["cached_runs"] == 5 + 1  # its sections and its model


@pytest.mark.slow
def test_a_section_that_fails_is_reported_after_the_others_are_kept(tmp_path, local_ray, data_root):
    """A model whose worker dies when attacked (as one out of memory): its robustness section fails in one line,
    once its other sections are done and kept, and a rerun computes only that section."""
    from safetensors.torch import save_file

    net = tmp_path / "net.py"
    net.write_text(NET.format(driver=os.getpid()))
    sys.path.insert(0, str(tmp_path))
    try:
        import net as module

        save_file(module.build().state_dict(), tmp_path / "net.safetensors")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("net", None)
    model = ("--model", f"{net}:build", "--set", f"model.weights={tmp_path / 'net.safetensors'}")
    result = _audit(tmp_path / "audit", *model, "--executor", "ray", data_root=data_root)
    assert_one_line_error(result, "section robustness of ")
    assert (
        "failed on the Ray cluster" in result.stderr and "(4 of the 5 sections finished and are kept)" in result.stderr
    )
    sections = {name for name, _ in _records(tmp_path / "audit")}
    assert sections == {"accuracy", "explanations", "ood", "corruptions"}
    net.write_text(NET.format(driver=None))  # the model mended: only the robustness section is computed
    again = _audit(tmp_path / "audit", *model, "--executor", "ray", data_root=data_root)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "audit" / "results.json").read_text())["cached_runs"] == 4


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_bad_ray_settings_are_one_line(tmp_path, monkeypatch):
    args = ["run", "residual-mlp", "--out", str(tmp_path / "study")]
    silent = f"127.0.0.1:{_closed_port()}"
    assert_one_line_error(dlapps_main(*args, "--executor", "ray", "--ray-address", silent), "no Ray cluster answers at")
    assert_one_line_error(
        dlapps_main(*args, "--executor", "ray", "--ray-address", "nowhere"), "must be auto, host:port"
    )
    assert_one_line_error(dlapps_main(*args, "--executor", "dask"), "unknown executor 'dask'; use local or ray")
    assert_one_line_error(dlapps_main(*args, "--ray-address", "auto"), "is for the ray executor")
    assert_one_line_error(dlapps_main(*args, "--executor", "ray", "--workers", "2"), "workers are for the local")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert_one_line_error(
        dlapps_main(*args, "--executor", "ray"), "--executor ray needs Ray: pip install 'dlapps[ray]'"
    )
