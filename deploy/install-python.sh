#!/bin/sh
# Build stage of deploy/Dockerfile.*: a virtual environment at /opt/venv with the
# project's dependencies and its build backend (REQUIREMENTS, made from pyproject.toml).
#   WHEEL_SOURCE=index       torch/torchvision from TORCH_INDEX, the rest from PyPI (online)
#   WHEEL_SOURCE=wheelhouse  only the wheels in /wheels (deploy/wheelhouse), no network
set -eu

log() { echo "install-python: $*" >&2; }

SOURCE="${WHEEL_SOURCE:-index}"
VENV="${VENV:-/opt/venv}"
WHEELS="${WHEELS:-/wheels}"
REQUIREMENTS="${REQUIREMENTS:-/opt/requirements.txt}"
case "$SOURCE" in
  index) ;;
  wheelhouse)
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
      log "WHEEL_SOURCE=wheelhouse but deploy/wheelhouse has no wheels; run fediqad deploy build --offline"
      exit 2
    fi ;;
  *) log "WHEEL_SOURCE must be 'index' or 'wheelhouse', got '$SOURCE'"; exit 2 ;;
esac

python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
if [ "$SOURCE" = wheelhouse ]; then
  $PIP install --no-cache-dir --no-index --find-links "$WHEELS" -r "$REQUIREMENTS"
else
  $PIP install --no-cache-dir --index-url "${TORCH_INDEX}" "${TORCH}" "${TORCHVISION}"
  $PIP install --no-cache-dir -r "$REQUIREMENTS"
fi
