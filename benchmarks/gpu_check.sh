#!/usr/bin/env bash
# The GPU benchmarks, on a machine with a CUDA GPU (see benchmarks/RESULTS.md, "GPU").
#   bash benchmarks/gpu_check.sh assemble      gather the copied part(s) of .carry/ into .gpu-data
#   bash benchmarks/gpu_check.sh bench         assemble, then the three benchmarks, results into $OUT
# dlapps runs from src/ with the machine's own torch; torchattacks from a wheel in .whl where pip cannot reach PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 DLAPPS_DATA="$PWD/.gpu-data"
out="${OUT:-/tmp/out}"
mkdir -p .gpu-data/weights "$out"

for part in .carry/part*; do
  [ -d "$part" ] && cp -r "$part"/. .gpu-data/
done
python3 - <<'PY'
import re
from pathlib import Path
import numpy as np
root = Path(".gpu-data")
chunks = sorted(root.glob("cifar10_train.*-of-*.npz"))
if chunks and not (root / "cifar10_train.npz").exists():
    expected = int(re.search(r"-of-(\d+)", chunks[0].name).group(1))
    if len(chunks) == expected:
        parts = [np.load(c) for c in chunks]
        np.savez(root / "cifar10_train.npz", images=np.concatenate([p["images"] for p in parts]),
                 labels=np.concatenate([p["labels"] for p in parts]), classes=parts[0]["classes"])
        print("cifar10_train.npz assembled from", len(chunks), "chunks")
    else:
        print(f"{len(chunks)} of {expected} CIFAR-10 training chunks so far")
PY
ls -la .gpu-data
[ "${1:-assemble}" = "assemble" ] && exit 0

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
size=$(python3 -c "import numpy as np; print(len(np.load('.gpu-data/cifar10_train.npz')['labels']))" 2>/dev/null || echo 0)
if [ "$size" -gt 0 ]; then
  # one run: seed-style, fp32 eager and compiled, bf16 eager and compiled
  python3 benchmarks/train_throughput.py --train-size "$size" --epochs "${EPOCHS:-10}" 2>&1 | tee "$out/train.log"
  cp benchmarks/results/train_throughput-resnet20-cuda.json "$out/"
fi
python3 benchmarks/attack_speed.py --sections bim --images 10000 --batch 1000 2>&1 | tee "$out/attack.log"
cp benchmarks/results/attack_speed-cuda.json "$out/"
# APGD-CE (100 steps) against torchattacks' APGD, and Square at AutoAttack's 5,000 queries, on 1,000 images
python3 benchmarks/attack_speed.py --sections apgd --apgd-methods apgd-ce --images 1000 --batch 500 2>&1 | tee "$out/apgd.log"
cp benchmarks/results/attack_speed-apgd-apgd-ce-cuda.json "$out/"
python3 benchmarks/square_agreement.py --images 1000 --queries 5000 --batch 500 2>&1 | tee "$out/square.log"
cp benchmarks/results/square_agreement-5000q-seed0-cuda.json "$out/"
