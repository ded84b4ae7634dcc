import pytest
import torch
from safetensors.torch import save_file

from dlapps.data import ResidentLoader, Transform, get_dataset
from dlapps.errors import CheckpointError
from dlapps.models import create_model, read_weights
from dlapps.train import Execution, TrainConfig, evaluate, fit, load_checkpoint, save_checkpoint

MNIST = get_dataset("mnist")


def _loaders(train, test, seed=0, batch_size=64):
    norm = Transform(mean=MNIST.mean, std=MNIST.std)
    return (
        ResidentLoader(train, batch_size=batch_size, shuffle=True, seed=seed, transform=norm),
        ResidentLoader(test, batch_size=500, transform=norm),
    )


def test_learns_real_mnist_subset(mnist_train, mnist_test):
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), width=32, depth=2)
    train, test = _loaders(mnist_train.subset(4000), mnist_test.subset(2000))
    history = fit(model, train, test, TrainConfig(epochs=3, batch_size=64, lr=2e-3))
    assert [h.epoch for h in history] == [1, 2, 3]
    assert history[-1].test_acc > 0.85  # chance is 0.10
    assert history[-1].train_loss < history[0].train_loss
    loss, acc = evaluate(model, test)
    assert acc == pytest.approx(history[-1].test_acc) and loss == pytest.approx(history[-1].test_loss)


@pytest.mark.slow  # torch.compile: half a minute on a CPU
def test_compiled_training_matches_eager(mnist_train, mnist_test):
    """Compiled (the CUDA default) trains the same weights as eager within float noise, on the CPU."""
    train_data, test_data = mnist_train.subset(2000), mnist_test.subset(1000)
    runs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), width=32, depth=2)
        train, test = _loaders(train_data, test_data)
        history = fit(model, train, test, TrainConfig(epochs=2, batch_size=64, lr=2e-3), execution=Execution(compiled))
        runs[compiled] = model, history
    (eager, eager_history), (compiled, compiled_history) = runs[False], runs[True]
    assert list(compiled.state_dict()) == list(eager.state_dict())  # trained in place, not through a wrapper's keys
    assert compiled_history[-1].test_acc == pytest.approx(eager_history[-1].test_acc, abs=0.01)
    for a, b in zip(eager.state_dict().values(), compiled.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    assert all(0 < h.train_seconds <= h.seconds for h in compiled_history)


def test_bf16_training_on_the_cpu_learns_like_fp32_and_says_so(tmp_path, mnist_train, mnist_test):
    """bf16: autocast on the CPU (emulated where not native: slow, so a
    tiny CNN), reaching fp32's accuracy; the checkpoint records the precision used."""
    train_data, test_data = mnist_train.subset(4000), mnist_test.subset(1000)
    runs = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = create_model("small_cnn", num_classes=10, in_shape=(1, 28, 28), channels=(8, 16), hidden=32)
        train, test = _loaders(train_data, test_data)
        path = tmp_path / f"{precision}.safetensors"
        history = fit(
            model,
            train,
            test,
            TrainConfig(epochs=2, lr=3e-3),
            checkpoint=path,
            execution=Execution(precision=precision),
        )
        runs[precision] = model, history, load_checkpoint(path, model)
    (fp32, fp32_history, fp32_info), (bf16, bf16_history, bf16_info) = runs["fp32"], runs["bf16"]
    assert (fp32_info["precision"], bf16_info["precision"]) == ("fp32", "bf16")
    for model in (fp32, bf16):  # a convnet without narrow batch norms trains channels-last in either precision
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.dtype == torch.float32
    assert fp32_history[-1].test_acc > 0.85 and abs(bf16_history[-1].test_acc - fp32_history[-1].test_acc) < 0.03


def test_auto_precision_is_bf16_only_where_it_trains_faster(monkeypatch):
    """On a CPU: native bf16 and AMX tiles; AVX-512 BF16 alone trains slower than fp32."""
    from dlapps.errors import ConfigError
    from dlapps.train import device

    cpu = torch.device("cpu")
    for native, amx, expected in [
        (False, False, "fp32"),
        (True, False, "fp32"),
        (False, True, "fp32"),
        (True, True, "bf16"),
    ]:
        monkeypatch.setattr(device, "native_bf16", lambda _, native=native: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        assert device.resolve_precision("auto", cpu) == expected
    assert [device.resolve_precision(p, cpu) for p in ("fp32", "bf16")] == ["fp32", "bf16"]
    with pytest.raises(ConfigError, match="unknown precision 'fp16'; use auto, fp32, bf16"):
        device.resolve_precision("fp16", cpu)


class _Interrupt(Exception):
    pass


def _train_run(train_data, test_data, checkpoint, stop_after=None):
    torch.manual_seed(1)
    model = create_model("residual_mlp", num_classes=10, in_shape=(1, 28, 28), width=16, depth=4, layers_per_block=2)
    train, test = _loaders(train_data, test_data, seed=7)
    config = TrainConfig(epochs=4, batch_size=64, optimizer="sgd", lr=0.05, schedule="cosine", weight_decay=1e-4)

    def stop(stats):
        if stop_after is not None and stats.epoch == stop_after:
            raise _Interrupt

    # A resumed run must rebuild the same model; its initial weights are replaced by the checkpoint's.
    return model, fit(model, train, test, config, seed=7, checkpoint=checkpoint, on_epoch_end=stop)


def test_interrupted_run_resumes_to_identical_results(tmp_path, mnist_train, mnist_test):
    train_data, test_data = mnist_train.subset(1500), mnist_test.subset(500)
    model_a, history_a = _train_run(train_data, test_data, tmp_path / "a.safetensors")
    with pytest.raises(_Interrupt):
        _train_run(train_data, test_data, tmp_path / "b.safetensors", stop_after=2)
    assert load_checkpoint(tmp_path / "b.safetensors", model_a.__class__(784, 16, 4, 10, 2))["epoch"] == 2
    model_b, history_b = _train_run(train_data, test_data, tmp_path / "b.safetensors")
    key = lambda h: (h.epoch, h.lr, h.train_loss, h.train_acc, h.test_loss, h.test_acc)  # noqa: E731
    assert [key(h) for h in history_b] == [key(h) for h in history_a]
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_of_another_run_is_refused(tmp_path, mnist_test):
    model = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), depth=2)
    train, test = _loaders(mnist_test.subset(200), mnist_test.subset(100))
    fit(model, train, test, TrainConfig(epochs=1), checkpoint=tmp_path / "c.safetensors")
    with pytest.raises(CheckpointError, match="belongs to a different run"):
        fit(model, train, test, TrainConfig(epochs=2), checkpoint=tmp_path / "c.safetensors")


def test_evaluate_restores_mode(mnist_test):
    model = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), depth=2).train()
    evaluate(model, _loaders(mnist_test.subset(100), mnist_test.subset(100))[1])
    assert model.training


def test_save_and_load_roundtrip(tmp_path):
    model = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), depth=2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "m.safetensors", model, optimizer=optimizer, info={"epoch": 3})
    fresh = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), depth=2)
    fresh_opt = torch.optim.Adam(fresh.parameters())
    assert load_checkpoint(tmp_path / "m.safetensors", fresh, optimizer=fresh_opt) == {"epoch": 3}
    assert torch.equal(fresh.head.weight, model.head.weight)
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_bad_checkpoints_and_weights(tmp_path):
    model = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), depth=2)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.safetensors", model)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors", model)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a dlapps checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors", model)
    deeper = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), depth=3)
    save_checkpoint(tmp_path / "deep.safetensors", deeper)
    with pytest.raises(CheckpointError, match=r"does not fit MLP: unexpected hidden\.2\.0\.bias, hidden\.2\.0\.weight"):
        load_checkpoint(tmp_path / "deep.safetensors", model)
    wide = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), depth=2, width=8)
    save_checkpoint(tmp_path / "wide.safetensors", wide)
    with pytest.raises(CheckpointError, match=r"shape stem\.1\.weight \(8, 784\) vs \(16, 784\)"):
        load_checkpoint(tmp_path / "wide.safetensors", model)


class _Payload:  # a pickled object that weights_only loading must refuse
    def __reduce__(self):
        return (print, ("this must never run",))


def test_read_weights_refuses_pickles_and_unwraps_state_dict(tmp_path):
    torch.save({"state_dict": {"module.w": torch.ones(2)}, "best_prec1": 91.7}, tmp_path / "ok.th")
    assert list(read_weights(tmp_path / "ok.th")) == ["module.w"]
    torch.save({"weights": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="holds Python objects besides tensors, which dlapps does not load"):
        read_weights(tmp_path / "evil.pt")
    (tmp_path / "broken.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError):
        read_weights(tmp_path / "broken.pt")


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_optimizers_use_their_fused_kernels_on_the_cpu(optimizer):
    """The per-tensor loop costs more than a width-16 MLP's forward and backward passes."""
    from dlapps.train.trainer import build_optimizer

    model = create_model("residual_mlp", num_classes=10, in_shape=(1, 28, 28), width=16, depth=4)
    built = build_optimizer(model.parameters(), TrainConfig(optimizer=optimizer, lr=0.01))
    assert built.defaults["fused"] is True and built.defaults["lr"] == 0.01
    assert type(built).__name__.lower() == optimizer
