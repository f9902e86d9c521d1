#!/usr/bin/env bash
# The reference's CUDA path, measured in one go on a machine with a GPU (docs/performance.md, "CUDA").
#
#   benchmarks/run_cuda.sh OUTDIR MODEL.pt EXPORT_DIR [TRAIN_SECONDS]
#
# MODEL.pt: the Pairwise-MNIST paper-config checkpoint; EXPORT_DIR: its export (manifest.json,
# weights.npz and rtl/rtl.json are all `hrn-hw bench` reads). Writes into OUTDIR:
#   env.txt                       GPU, driver, torch
#   pytest_cuda.log               tests/test_cuda.py (routing paths, CPU/GPU routes, CLI training)
#   bench_train_infer_cuda.json   benchmarks/bench_train_infer.py --device cuda (HRN batched/oracle vs VC)
#   bench_cuda/                   hrn-hw bench MODEL.pt --device cuda (batch 1 / 256 next to the RTL)
#   eval_cuda.json                hrn-hw eval MODEL.pt --device cuda
#   train_cuda.json               hrn-hw train --scenario pairwise-mnist --device cuda (full data,
#                                 paper config), stopped after TRAIN_SECONDS (default 240)
# Each step runs even when an earlier one failed; the exit status counts the failures.
set -u
out=${1:?OUTDIR}; model=${2:?MODEL.pt}; export_dir=${3:?EXPORT_DIR}; train_s=${4:-240}
py=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
mkdir -p "$out"
failed=0

step() {   # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "== $name"
    timeout "$limit" "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || failed=$((failed + 1))
}

{ nvidia-smi -L; nvidia-smi --query-gpu=driver_version,clocks.sm,clocks.mem --format=csv;
  "$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } >"$out/env.txt" 2>&1
cat "$out/env.txt"
cd "$here" || exit 2
step pytest 300 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py -o addopts=-ra \
    >"$out/pytest_cuda.log" 2>&1; tail -3 "$out/pytest_cuda.log"
step bench_train_infer 400 "$py" benchmarks/bench_train_infer.py --device cuda --out "$out/bench_train_infer_cuda.json"
step bench 300 "$py" -m hrn_hw.cli bench "$model" --device cuda --export "$export_dir" --n 1000 -o "$out/bench_cuda"
step eval 120 "$py" -m hrn_hw.cli eval "$model" --device cuda --results "$out/eval_cuda.json"
rm -rf /tmp/hrn_cuda_train
step train "$train_s" "$py" -m hrn_hw.cli train --scenario pairwise-mnist --device cuda \
    --out /tmp/hrn_cuda_train/model.pt --results "$out/train_cuda.json"
echo "failed steps: $failed"
exit "$failed"
