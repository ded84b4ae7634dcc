"""Data-parallel training with torchrun on the CPU (gloo): same result as one process, within noise."""

import os
import subprocess
import sys

import pytest
import torch

from dlapps.data import ImageArrays, ResidentLoader, Shard
from dlapps.report.io import read_json
from helpers import dlapps_main

RECIPE = ["--model", "mlp", "--dataset", "mnist", "--set", "train_subset=3000", "--set", "test_subset=1000",
          "--set", "train.epochs=3", "--set", "train.lr=0.003", "--set", "train.batch_size=64",
          "--set", "augment=false", "--no-progress"]  # fmt: skip


def test_shards_are_disjoint_equal_and_cover_the_data():
    data = ImageArrays(torch.zeros(11, 1, 2, 2, dtype=torch.uint8), torch.arange(11), ("a",), "t")
    shards = [ResidentLoader(data, batch_size=4, shard=Shard(r, 3), seed=5).labels for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert len(set(torch.cat(shards).tolist())) == 9


def _train(out, data_root, processes: int) -> dict:
    """``dlapps train`` under torchrun with ``processes`` processes; one process: in this one."""
    if processes == 1:
        result = dlapps_main("train", *RECIPE, "--out", str(out), data_root=data_root)
    else:
        env = {**os.environ, "DLAPPS_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [*launcher, "-m", "dlapps", "train", *RECIPE, "--out", str(out)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = out.glob("*.json")
    return read_json(metrics)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path, data_root):
    single = _train(tmp_path / "one", data_root, 1)
    double = _train(tmp_path / "two", data_root, 2)
    assert single["processes"] == 1 and double["processes"] == 2
    acc_1, acc_2 = single["history"][-1]["test_acc"], double["history"][-1]["test_acc"]
    assert acc_1 > 0.8 and acc_2 > 0.8 and abs(acc_1 - acc_2) < 0.04
    assert len(double["history"]) == 3
