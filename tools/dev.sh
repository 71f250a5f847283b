#!/usr/bin/env bash
# Set up Kiln on a fresh machine, then run its main job or its tests.
#   bash tools/dev.sh demo   # venv + pinned deps, compile the bundled TinyGPT for CPU, run it,
#                            # print max error and latency against eager PyTorch
#   bash tools/dev.sh test   # venv + pinned deps, then lit (FileCheck) and pytest
# Installs come only from the package registries (torch 2.13.0 CPU wheel where pip finds it).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${KILN_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[dev] creating $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.kiln-install-stamp"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[dev] installing kiln and its pinned dependencies (first time: about a minute)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,cuda]'
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
case "${1:-}" in
  demo)
    shift
    exec "$VENV/bin/kiln" demo "$@"
    ;;
  test)
    shift
    PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/lit" -q tests/lit
    exec "$VENV/bin/python" -m pytest tests -q -p no:cacheprovider "$@"
    ;;
  *)
    echo "usage: bash tools/dev.sh demo|test" >&2
    exit 2
    ;;
esac
