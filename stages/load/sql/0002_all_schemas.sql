-- Every other schema's hypertable (stories 2.3-2.4), and the contract's raw symbol on OHLCV rows.
-- Columns follow Databento's field names; prices are exact numeric(19,9) (price * 1e9 = the DBN
-- integer); timestamps are timestamptz (microseconds) plus the exact nanoseconds as bigint.
ALTER TABLE ohlcv_data ADD COLUMN raw_symbol text;

CREATE TABLE trades_data (
    ts_event                timestamptz NOT NULL,
    ts_event_ns             bigint,
    ts_recv                 timestamptz,
    ts_recv_ns              bigint,
    dataset                 text NOT NULL,
    publisher_id            integer NOT NULL,
    instrument_id           bigint NOT NULL,
    symbol                  text,
    raw_symbol              text,
    price                   numeric(19, 9),
    size                    bigint,
    action                  text,
    side                    text,
    flags                   smallint,
    depth                   smallint,
    ts_in_delta             integer,
    sequence                bigint,
    dup_ordinal             integer NOT NULL,
    load_id                 integer NOT NULL
);
SELECT create_hypertable('trades_data', by_range('ts_event', INTERVAL '1 day'));
CREATE INDEX trades_data_instrument_time ON trades_data (instrument_id, ts_event DESC);

CREATE TABLE tbbo_data (
    ts_event                timestamptz NOT NULL,
    ts_event_ns             bigint,
    ts_recv                 timestamptz,
    ts_recv_ns              bigint,
    dataset                 text NOT NULL,
    publisher_id            integer NOT NULL,
    instrument_id           bigint NOT NULL,
    symbol                  text,
    raw_symbol              text,
    price                   numeric(19, 9),
    size                    bigint,
    action                  text,
    side                    text,
    flags                   smallint,
    depth                   smallint,
    ts_in_delta             integer,
    sequence                bigint,
    bid_px                  numeric(19, 9),
    ask_px                  numeric(19, 9),
    bid_sz                  bigint,
    ask_sz                  bigint,
    bid_ct                  bigint,
    ask_ct                  bigint,
    dup_ordinal             integer NOT NULL,
    load_id                 integer NOT NULL
);
SELECT create_hypertable('tbbo_data', by_range('ts_event', INTERVAL '1 day'));
CREATE INDEX tbbo_data_instrument_time ON tbbo_data (instrument_id, ts_event DESC);

CREATE TABLE statistics_data (
    ts_event                timestamptz NOT NULL,
    ts_event_ns             bigint,
    ts_recv                 timestamptz,
    ts_recv_ns              bigint,
    ts_ref                  timestamptz,
    ts_ref_ns               bigint,
    dataset                 text NOT NULL,
    publisher_id            integer NOT NULL,
    instrument_id           bigint NOT NULL,
    symbol                  text,
    raw_symbol              text,
    stat_type               integer,
    update_action           smallint,
    stat_flags              smallint,
    price                   numeric(19, 9),
    quantity                bigint,
    sequence                bigint,
    ts_in_delta             integer,
    channel_id              integer,
    dup_ordinal             integer NOT NULL,
    load_id                 integer NOT NULL
);
SELECT create_hypertable('statistics_data', by_range('ts_event', INTERVAL '7 days'));
CREATE INDEX statistics_data_instrument_time ON statistics_data (instrument_id, ts_event DESC);

CREATE TABLE definitions_data (
    ts_recv                 timestamptz NOT NULL,
    ts_recv_ns              bigint,
    ts_event                timestamptz,
    ts_event_ns             bigint,
    dataset                 text NOT NULL,
    publisher_id            integer NOT NULL,
    instrument_id           bigint NOT NULL,
    symbol                  text,
    raw_symbol              text,
    instrument_class        text,
    security_update_action  text,
    raw_instrument_id       bigint,
    min_price_increment     numeric(19, 9),
    display_factor          numeric(19, 9),
    high_limit_price        numeric(19, 9),
    low_limit_price         numeric(19, 9),
    strike_price            numeric(19, 9),
    expiration              timestamptz,
    activation              timestamptz,
    contract_multiplier     integer,
    min_lot_size_round_lot  integer,
    maturity_year           integer,
    maturity_month          smallint,
    maturity_day            smallint,
    underlying              text,
    underlying_id           bigint,
    asset                   text,
    exchange                text,
    currency                text,
    settl_currency          text,
    strike_price_currency   text,
    security_type           text,
    cfi                     text,
    "group"                 text,
    unit_of_measure         text,
    unit_of_measure_qty     numeric(19, 9),
    match_algorithm         text,
    leg_count               integer,
    dup_ordinal             integer NOT NULL,
    load_id                 integer NOT NULL
);
SELECT create_hypertable('definitions_data', by_range('ts_recv', INTERVAL '30 days'));
CREATE INDEX definitions_data_instrument_time ON definitions_data (instrument_id, ts_recv DESC);
