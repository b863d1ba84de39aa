#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with torch, torchvision and loco_ad[dev,vand,docs].
# TORCH_SPEC overrides the torch pair (default: torch 2.14.1 from PyPI, which on Linux x86-64 brings
# NVIDIA's CUDA libraries: a 6.5 GB .venv); any torch>=2.1 build works, e.g. the CPU-only wheels with
# TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu".
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
.venv/bin/python -m pip install -q -e '.[dev,vand,docs]'
.venv/bin/python -c "import loco_ad, torch, torchvision, segment_anything, transformers, faiss; print('loco_ad ready, torch', torch.__version__)"
