#!/usr/bin/env bash
# CI: the images on a real Docker engine (tests/deploy/test_engine.py).
# Starts dockerd when no engine answers (installing Debian's docker.io and debootstrap
# with apt-get where absent), runs the test, and stops the daemon it started (by PID).
# Where no engine can be started it says so loudly and exits 0: the test is skipped.
# Needs root. Run from the repository root inside the project's virtual environment.
set -uo pipefail
cd "$(dirname "$0")/.."

STATE="$(mktemp -d /tmp/fediqad-ci-engine.XXXXXX)"
DOCKERD_PID=""

skip() {
  echo "======================================================================" >&2
  echo "ENGINE TEST SKIPPED: $*" >&2
  echo "======================================================================" >&2
  exit 0
}

stop_dockerd() {
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    echo "ci-engine: stopping dockerd (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID"
    # dockerd stops its containers first; wait for the process itself to exit.
    while kill -0 "$DOCKERD_PID" 2>/dev/null; do sleep 1; done
  fi
}
trap stop_dockerd EXIT

[ "$(id -u)" = 0 ] || skip "not root (dockerd and the bind-mount ownership need root)"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
  echo "ci-engine: apt-get install ${need[*]}"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } \
    >"$STATE/apt.log" 2>&1 || skip "apt-get install ${need[*]} failed: $(tail -1 "$STATE/apt.log")"
fi

if ! docker info >/dev/null 2>&1; then
  echo "ci-engine: starting dockerd (log $STATE/dockerd.log)"
  dockerd --pidfile "$STATE/dockerd.pid" >"$STATE/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  # Wait for the daemon's API, or for the daemon to die: whichever happens first.
  until docker info >/dev/null 2>&1; do
    kill -0 "$DOCKERD_PID" 2>/dev/null \
      || skip "dockerd exited: $(grep -m1 -iE 'level=(fatal|error)' "$STATE/dockerd.log" || tail -1 "$STATE/dockerd.log")"
    sleep 1
  done
fi
echo "ci-engine: $(docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}')"

started=$(date +%s)
FEDIQAD_ENGINE_TEST=1 python -m pytest -q -s -p no:cacheprovider tests/deploy/test_engine.py
status=$?
echo "ci-engine: engine test exit $status after $(($(date +%s) - started)) s ($(uptime))"
exit "$status"
