#!/bin/sh
# Entrypoint of the fediqad hospital image: this site's SuperNode running this project's
# ClientApp (`fediqad client`) over TLS with its node key. The multi-host test runs this
# very script. Settings come from the environment (see deploy/hospital.env.example).
# Every start-up problem ends in one line on stderr and a non-zero exit code.
set -eu

log() { echo "fediqad-hospital: $*" >&2; }

SERVER="${FEDIQAD_SERVER:-}"
SITE="${FEDIQAD_SITE_NAME:-}"
DATA="${FEDIQAD_DATA_PATH:-/data}"
CERTS="${FEDIQAD_CERTS:-/certs}"
STATE="${FEDIQAD_STATE_DIR:-${HOME:-/tmp}/.fediqad/supernode}"
MAX_WAIT="${FEDIQAD_MAX_WAIT:-300}"

[ -n "$SERVER" ] || { log "FEDIQAD_SERVER is not set (the server's HOST:PORT)"; exit 2; }
[ -n "$SITE" ] || { log "FEDIQAD_SITE_NAME is not set (this hospital's name)"; exit 2; }
if [ ! -d "$DATA" ]; then
  log "data path $DATA does not exist in the container; mount the site's data there (read-only)"
  exit 2
fi
if [ -z "$(ls -A "$DATA" 2>/dev/null)" ]; then
  log "data path $DATA is empty or not readable by uid $(id -u); check the mount"
  exit 2
fi

case "${FEDIQAD_INSECURE:-0}" in
  1|true|yes) SECURITY="--insecure" ;;
  0|false|no|"") SECURITY="--certs $CERTS" ;;
  *) log "FEDIQAD_INSECURE must be 0 or 1, got '${FEDIQAD_INSECURE}'"; exit 2 ;;
esac

# shellcheck disable=SC2086  # SECURITY is two words on purpose
exec fediqad client $SECURITY --server "$SERVER" --site-name "$SITE" --data-path "$DATA" \
  --flwr-home "$STATE" --runtime-port "${FEDIQAD_RUNTIME_PORT:-9094}" --max-wait "$MAX_WAIT" "$@"
