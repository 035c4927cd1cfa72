-- The load ledger and the OHLCV hypertable.
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- One row per chunk in the database: which standardized file it holds, written in the same
-- transaction as the chunk's rows. `load_id` tags every row the chunk inserted.
CREATE TABLE hist_chunk_loads (
    chunk_id        text PRIMARY KEY,
    load_id         integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    table_name      text NOT NULL,
    dataset         text NOT NULL,
    schema          text NOT NULL,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    source_sha256   text NOT NULL,
    transform_event text NOT NULL,
    rows_loaded     bigint NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hist_chunk_loads_window ON hist_chunk_loads (table_name, dataset, schema, window_start);

CREATE TABLE ohlcv_data (
    ts_event      timestamptz NOT NULL,
    ts_event_ns   bigint NOT NULL,
    dataset       text NOT NULL,
    interval      text NOT NULL,
    publisher_id  integer NOT NULL,
    instrument_id bigint NOT NULL,
    symbol        text,
    open          numeric(19, 9),
    high          numeric(19, 9),
    low           numeric(19, 9),
    close         numeric(19, 9),
    volume        bigint,
    dup_ordinal   integer NOT NULL,
    load_id       integer NOT NULL
);
SELECT create_hypertable('ohlcv_data', by_range('ts_event', INTERVAL '7 days'));
CREATE INDEX ohlcv_data_instrument_time ON ohlcv_data (instrument_id, ts_event DESC);
