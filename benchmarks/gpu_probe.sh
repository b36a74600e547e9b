#!/usr/bin/env bash
# Where the GPU recipe run spends its time (a follow-up to benchmarks/gpu.sh, ~2.5 minutes).
#
#   bash benchmarks/gpu_probe.sh            # on the GPU machine (carry .gpu-pack): -> $GPU_SH_OUT
#   bash benchmarks/gpu_probe.sh --smoke    # anywhere, CPU: checks it runs
#
# gpu.sh trains the robust recipe at about 1,000-1,400 img/s on an H200, far below what a
# MobileNetV2 at 112 px should reach there.  This measures (1) the bare train step of that model at
# the recipe's size and batch (no data at all), and (2) 3-epoch trainings of the robust recipe,
# of it without its JPEG augmentation (the one change that leaves the device: a PIL round trip per
# chosen image), and of the plain recipe (no quality augmentation), from their per-epoch img/s.
set -uo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh
if [[ "${1:-}" == "--smoke" ]]; then
    RESULTS="${GPU_SH_OUT:-/tmp/facefair-gpu-probe-smoke}"; DEVICE=cpu; STEP_ARGS=(--smoke)
    TRAIN_ARGS=(--limit 200 --epochs 1 --image-size 32 --batch-size 16)
else
    RESULTS="${GPU_SH_OUT:-benchmarks/results}"; DEVICE=cuda
    STEP_ARGS=(--size 112 --batch-size 128 --steps 50 --warmup 10 --variants bare_fp32 amp amp_channels_last)
    TRAIN_ARGS=(--epochs 3 --amp --channels-last)
fi
mkdir -p "$RESULTS"
WORK="$(mktemp -d /tmp/facefair-probe.XXXXXX)"
if [[ -f "$PACK_FACES" ]]; then
    unpack_pack "$WORK"
    DATA="$WORK/UTKFace"; WEIGHTS="$PACK_WEIGHTS_FILE"
else
    echo "gpu_probe.sh: no .gpu-pack (run benchmarks/gpu_pack.py)" >&2; exit 2
fi

timeout 120 "$PY" benchmarks/gpu_step.py --backbones mobilenetv2 --device "$DEVICE" "${STEP_ARGS[@]}" \
    --out "$RESULTS/gpu-probe-step.json"

declare -A VARIANT_ARGS=(
    [robust]="--config configs/utkface-cpu-robust.yaml"
    [robust-no-jpeg]="--config configs/utkface-cpu-robust.yaml --augment-jpeg 0"
    [plain]="--config configs/utkface-cpu.yaml"
)
for NAME in robust robust-no-jpeg plain; do
    # shellcheck disable=SC2086  # the variant's arguments are meant to split
    timeout 150 "$PY" -m facefair train ${VARIANT_ARGS[$NAME]} --data "$DATA" --weights "$WEIGHTS" --device "$DEVICE" \
        "${TRAIN_ARGS[@]}" --cache-dir "$WORK/cache" --out-dir "$WORK/runs/$NAME" --no-tensorboard --no-progress \
        2>&1 | grep -E "^epoch " | sed "s/^/$NAME: /" | tee -a "$RESULTS/gpu-probe-epochs.txt"
done
rm -rf "$WORK"
echo "gpu_probe.sh done: $RESULTS/gpu-probe-step.json $RESULTS/gpu-probe-epochs.txt"
