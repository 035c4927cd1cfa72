#!/usr/bin/env bash
# The demo behind `make demo`: a local TimescaleDB cluster, the replay gateway serving generated
# data, `hist ingest` of the sample job in the requirements' form, then a query of what landed.
# Everything lives under $STATE (default .hist/); `make stop` stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=$(realpath -m "${STATE:-.hist}")
PG_PORT=${PG_PORT:-55432}
BIN=.venv/bin
PY=$BIN/python
. tools/replay.sh
mkdir -p "$STATE"

# A throwaway key for the local gateway: never printed, never on a command line.
replay_key "$STATE/demo.key"

echo "== generating synthetic Databento data (deterministic, seed 7; bars, tbbo and statistics from one tape of trades)"
[ -f "$STATE/data/GLBX.MDP3/symbology.json" ] || "$BIN/python" tools/generate.py --out "$STATE/data" \
    --dataset GLBX.MDP3 --symbols ESH4,ESM4,NQH4 --start 2024-01-02 --end 2024-01-04 --seed 7

echo "== starting TimescaleDB"
HIST_DATABASE_URL=$(bash tools/timescaledb.sh start "$STATE/pg" "$PG_PORT")
export HIST_DATABASE_URL

echo "== starting the replay gateway"
GATEWAY_PID=
trap 'kill $GATEWAY_PID 2>/dev/null || true' EXIT
replay_gateway "$STATE/data" "$STATE"
export HIST_LAKE=$STATE/lake

echo "== hist db init"
"$BIN/hist" db init
echo "== hist doctor"
"$BIN/hist" doctor
echo "== hist ingest (the requirements' form)"
"$BIN/hist" ingest --api databento --dataset GLBX.MDP3 --schema ohlcv-1m --symbols ESH4,NQH4 \
    --start-date 2024-01-02 --end-date 2024-01-04
for job in es_nq_ohlcv_1s es_nq_ohlcv_5m es_nq_ohlcv_15m es_nq_ohlcv_1h es_nq_ohlcv_1d es_nq_trades es_nq_tbbo \
           es_nq_statistics es_nq_definitions es_parent_ohlcv_1h es_front_ohlcv_1d; do
    echo "== hist ingest --job $job"
    "$BIN/hist" ingest --job "$job"
done
echo "== hist lake status"
"$BIN/hist" lake status
echo "== what landed in TimescaleDB"
export PGTZ=UTC  # show times in UTC, whatever this machine's zone
psql "$HIST_DATABASE_URL" -P pager=off -c "
SELECT 'ohlcv_data' AS table_name, count(*) AS rows FROM ohlcv_data
UNION ALL SELECT 'trades_data', count(*) FROM trades_data
UNION ALL SELECT 'tbbo_data', count(*) FROM tbbo_data
UNION ALL SELECT 'statistics_data', count(*) FROM statistics_data
UNION ALL SELECT 'definitions_data', count(*) FROM definitions_data;"
echo "== ESH4 on 2024-01-02: minute, hour and day bars and the trades they come from agree"
psql "$HIST_DATABASE_URL" -P pager=off -c "
SELECT interval AS bars_of, count(*) AS bars, min(low) AS low, max(high) AS high, sum(volume) AS volume
FROM ohlcv_data WHERE symbol = 'ESH4' AND interval IN ('1m', '1h', '1d')
  AND ts_event >= '2024-01-02' AND ts_event < '2024-01-03' GROUP BY interval
UNION ALL
SELECT 'trades', count(*), min(price), max(price), sum(size) FROM trades_data
WHERE symbol = 'ESH4' AND ts_event >= '2024-01-02' AND ts_event < '2024-01-03'
ORDER BY bars DESC;"
echo "== a chart of ESH4's 15-minute bars"
"$BIN/hist" query --schema ohlcv-1m --symbols ESH4 --start-date 2024-01-02 --end-date 2024-01-03 --interval 15m \
    --chart "$STATE/ESH4-2024-01-02.png"
echo "Lake: $HIST_LAKE   Database: $HIST_DATABASE_URL   Chart: $STATE/ESH4-2024-01-02.png   (stop it with: make stop)"
