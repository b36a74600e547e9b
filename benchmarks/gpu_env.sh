# Sourced by benchmarks/gpu.sh and benchmarks/gpu_probe.sh (from the repository root): the Python
# they run and how the pack of benchmarks/gpu_pack.py is unpacked.
# Python: $PYTHON, else .venv/bin/python, else python3; facefair itself is taken from src/.
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PACK_FACES=.gpu-pack/UTKFace.zip
PACK_WEIGHTS_FILE=.gpu-pack/mobilenet_v2-fp16.pth

# unpack_pack DEST: the pack's faces into DEST/UTKFace
unpack_pack() {
    "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$PACK_FACES" "$1"
}
