#!/bin/sh
# Entrypoint of the fediqad server image: a TLS SuperLink with SuperNode authentication
# running this project's ServerApp (`fediqad server`). The multi-host test runs this very
# script. Settings come from the environment (see deploy/server.env.example); extra
# arguments are passed on to `fediqad server` (e.g. --rounds 20 --dataset EYEQ).
set -eu

log() { echo "fediqad-server: $*" >&2; }

CERTS="${FEDIQAD_CERTS:-/certs}"
RUN_DIR="${FEDIQAD_RUN_DIR:-/runs/federated}"
HOST="${FEDIQAD_HOST:-0.0.0.0}"
PORT="${FEDIQAD_PORT:-9092}"

case "${FEDIQAD_INSECURE:-0}" in
  1|true|yes) SECURITY="--insecure" ;;
  0|false|no|"") SECURITY="--certs $CERTS" ;;
  *) log "FEDIQAD_INSECURE must be 0 or 1, got '${FEDIQAD_INSECURE}'"; exit 2 ;;
esac

if ! mkdir -p "$RUN_DIR" 2>/dev/null || [ ! -w "$RUN_DIR" ]; then
  log "run directory $RUN_DIR is not writable by uid $(id -u); mount a writable volume there"
  exit 2
fi

# shellcheck disable=SC2086  # SECURITY is two words on purpose
exec fediqad server $SECURITY --host "$HOST" --port "$PORT" --run-dir "$RUN_DIR" \
  ${FEDIQAD_SERVER_ARGS:-} "$@"
