#!/usr/bin/env bash
# The GPU benchmark in one command: whisper-small and medium (random weights), bf16,
# ZeRO 0/2, gradient checkpointing off/on, through the trainer's Worker on one GPU:
# samples/s, MFU, peak memory next to the planner, evaluation utterances/s
# -> bench/results/gpu.json (or --out FILE). Under 8 minutes on one H100/H200.
#
#   bench/gpu.sh                 # on a GPU machine
#   bench/gpu.sh --dry-run       # anywhere: tiny dimensions, one step each, CPU
#   bench/gpu.sh --peak-tflops 989.4 --template DIR --out FILE   (see --help)
#
# Python: $PYTHON, else the Makefile's venv (keyed by the locks), else python3.
# When whisperft does not import from this tree (a bare GPU machine with the
# packages added on PYTHONPATH), a temporary folder maps the package as
# pyproject.toml does (whisperft.operator = operator/, whisperft.trainer = trainer/).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export WHISPERFT_CACHE="${WHISPERFT_CACHE:-$HOME/.cache/whisperft}"

py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  key="$(cat requirements-bootstrap.lock requirements.lock 2>/dev/null | sha256sum | cut -c1-12)"
  venv="${VENV:-$WHISPERFT_CACHE/venv-$key}"
  if [[ -x "$venv/bin/python" ]]; then
    py="$venv/bin/python"
  else
    py="$(command -v python3 || command -v python || true)"
  fi
fi
if [[ -z "$py" ]]; then
  echo "bench/gpu.sh: no Python found (set PYTHON, or run make install)" >&2
  exit 2
fi

shim=""
cleanup() { if [[ -n "$shim" ]]; then rm -rf "$shim"; fi; }
trap cleanup EXIT
here_pkg="$("$py" -c 'import pathlib, whisperft; print(pathlib.Path(whisperft.__file__).resolve().parent)' 2>/dev/null || true)"
if [[ "$here_pkg" != "$repo/whisperft" ]]; then
  shim="$(mktemp -d)"
  mkdir "$shim/whisperft"
  for f in whisperft/*.py; do ln -s "$repo/$f" "$shim/whisperft/"; done
  ln -s "$repo/operator" "$shim/whisperft/operator"
  ln -s "$repo/trainer" "$shim/whisperft/trainer"
  export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
fi

"$py" bench/gpu_throughput.py "$@"
