#!/usr/bin/env bash
# `make check-plain-install`: does hist run as a plain `pip install .` (no extras) leaves it?
# A fresh venv installs a copy of the work tree, not editable (a module, a dependency or a package-data
# file the wheel misses fails here), and its `hist`, run outside the repository, must show --help, set up
# a throwaway TimescaleDB, pass `hist doctor` and ingest a small job into a local lake through the replay
# gateway, with rows landing in ohlcv_data. The gateway and the data generator are test tools, not part
# of the package: they run on the dev venv (.venv, which `make` builds). Everything lives in a temp dir,
# removed at exit with the cluster and the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
PY=$REPO/.venv/bin/python
PG_PORT=${PG_PORT:-55442}
[ -x "$PY" ] || { echo "check_plain_install.sh: no dev venv in .venv (make builds it)" >&2; exit 1; }
. tools/replay.sh
unset HIST_SCHEDULER  # a local lake, in-process: nothing of the cluster extra

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hist-plain.XXXXXX")
chmod 755 "$WORK"  # as root the cluster runs as postgres, which must reach $WORK/pg
GATEWAY_PID= STEP=setup
cleanup() {
    local rc=$?
    set +e
    [ "$rc" -eq 0 ] || echo "check_plain_install.sh: FAILED: $STEP (exit $rc)" >&2
    if [ -n "$GATEWAY_PID" ]; then kill "$GATEWAY_PID" 2>/dev/null; wait "$GATEWAY_PID" 2>/dev/null; fi
    if [ "$rc" -ne 0 ] && [ -s "$WORK/gateway.log" ]; then
        echo "-- gateway log (last lines)"; tail -n 20 "$WORK/gateway.log"
    fi
    bash tools/timescaledb.sh stop "$WORK/pg"
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Each step by name, so a failure says which one (with the failing command's exit code).
step() { STEP=$1; shift; echo "== [$SECONDS s] $STEP"; "$@"; }
# The plain venv's hist, run from the temp dir: nothing is imported from the repository.
hist() { (cd "$WORK" && "$WORK/venv/bin/hist" "$@"); }

copy_tree() {  # the work tree as git sees it (tracked and new files, not ignored ones such as .venv)
    mkdir "$WORK/src"
    git ls-files -z --cached --others --exclude-standard \
        | tar --null -T - --ignore-failed-read -cf - | tar -xf - -C "$WORK/src"
}
plain_venv() {  # uv (a dev dependency) resolves and installs from the pyproject as pip does, in seconds, not minutes
    "$REPO/.venv/bin/uv" venv -q --python "$PYTHON" "$WORK/venv"
    VIRTUAL_ENV="$WORK/venv" "$REPO/.venv/bin/uv" pip install -q "$WORK/src"
}
help_shows() { hist --help > "$WORK/help.txt" && grep -q "ingest" "$WORK/help.txt"; }
start_db() {
    HIST_DATABASE_URL=$(bash tools/timescaledb.sh start "$WORK/pg" "$PG_PORT")
    export HIST_DATABASE_URL
}
start_gateway() {
    replay_key "$WORK/api.key"
    "$PY" tools/generate.py --out "$WORK/data" --dataset GLBX.MDP3 --symbols ESH4 \
        --start 2024-01-02 --end 2024-01-04 --schemas ohlcv-1m > /dev/null
    replay_gateway "$WORK/data" "$WORK"
}

SECONDS=0
step "copy of the work tree" copy_tree
step "install . (no extras) into a fresh venv" plain_venv
step "hist --help" help_shows
step "TimescaleDB (throwaway cluster)" start_db
step "replay gateway with generated ESH4 bars" start_gateway
export HIST_LAKE=$WORK/lake HIST_CONFIG=$REPO/configs/api_specific/databento_config.yaml
step "hist db init" hist db init
step "hist doctor" hist doctor
step "hist ingest (a local lake)" hist ingest --api databento --dataset GLBX.MDP3 --schema ohlcv-1m \
    --symbols ESH4 --start-date 2024-01-02 --end-date 2024-01-04
rows_landed() {
    ROWS=$(psql -X "$HIST_DATABASE_URL" -qAtc "SELECT count(*) FROM ohlcv_data")
    echo "$ROWS rows in ohlcv_data"
    [ "$ROWS" -gt 0 ]
}
step "rows in TimescaleDB" rows_landed
echo "plain install ok ($SECONDS s)"
