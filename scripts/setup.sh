#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with torch, torchvision and loco_ad[dev,vand].
# TORCH_SPEC overrides the torch pair (default: the CPU-usable pair that installs from local disk
# on the project's machines); users with CUDA may set TORCH_SPEC to any torch>=2.1 build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
.venv/bin/python -m pip install -q -e '.[dev,vand]'
.venv/bin/python -c "import loco_ad, torch, torchvision, segment_anything, transformers, faiss; print('loco_ad ready, torch', torch.__version__)"
