-- One ascending (instrument_id, time) index per market-data hypertable instead of TimescaleDB's
-- default (time DESC) index plus an (instrument_id, time DESC) one. Rows arrive in ascending time, so
-- descending indexes split pages on every insert; measured on this machine's 2 cores, one COPY stream
-- of trades went from about 135,000 to about 200,000 rows/s. Time-range queries use chunk exclusion;
-- per-instrument queries use the index.
DROP INDEX IF EXISTS ohlcv_data_ts_event_idx;
DROP INDEX IF EXISTS ohlcv_data_instrument_time;
CREATE INDEX ohlcv_data_instrument_time ON ohlcv_data (instrument_id, ts_event);
DROP INDEX IF EXISTS trades_data_ts_event_idx;
DROP INDEX IF EXISTS trades_data_instrument_time;
CREATE INDEX trades_data_instrument_time ON trades_data (instrument_id, ts_event);
DROP INDEX IF EXISTS tbbo_data_ts_event_idx;
DROP INDEX IF EXISTS tbbo_data_instrument_time;
CREATE INDEX tbbo_data_instrument_time ON tbbo_data (instrument_id, ts_event);
DROP INDEX IF EXISTS statistics_data_ts_event_idx;
DROP INDEX IF EXISTS statistics_data_instrument_time;
CREATE INDEX statistics_data_instrument_time ON statistics_data (instrument_id, ts_event);
DROP INDEX IF EXISTS definitions_data_ts_recv_idx;
DROP INDEX IF EXISTS definitions_data_instrument_time;
CREATE INDEX definitions_data_instrument_time ON definitions_data (instrument_id, ts_recv);
