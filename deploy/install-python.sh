#!/bin/sh
# Build stage of deploy/Dockerfile.*: a virtual environment at /opt/venv with the
# project's dependencies (read from pyproject.toml) and its build backend.
#   WHEEL_SOURCE=index       torch/torchvision from TORCH_INDEX, the rest from PyPI (online)
#   WHEEL_SOURCE=wheelhouse  only the wheels in /wheels (deploy/wheelhouse), no network
set -eu

log() { echo "install-python: $*" >&2; }

python3 -m venv /opt/venv
PIP="/opt/venv/bin/python -m pip"
/opt/venv/bin/python - <<'PY' > /tmp/requirements.txt
import tomllib
doc = tomllib.load(open("/opt/fediqad/pyproject.toml", "rb"))
print("\n".join(doc["project"]["dependencies"] + doc["build-system"]["requires"]))
PY

case "${WHEEL_SOURCE:-index}" in
  wheelhouse)
    if ! ls /wheels/*.whl >/dev/null 2>&1; then
      log "WHEEL_SOURCE=wheelhouse but deploy/wheelhouse has no wheels; run fediqad deploy build --offline"
      exit 2
    fi
    $PIP install --no-cache-dir --no-index --find-links /wheels -r /tmp/requirements.txt ;;
  index)
    $PIP install --no-cache-dir --index-url "${TORCH_INDEX}" "${TORCH}" "${TORCHVISION}"
    $PIP install --no-cache-dir -r /tmp/requirements.txt ;;
  *)
    log "WHEEL_SOURCE must be 'index' or 'wheelhouse', got '${WHEEL_SOURCE}'"
    exit 2 ;;
esac
rm -f /tmp/requirements.txt
