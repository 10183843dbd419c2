-- More time series: camera/device health samples and detection track segments (one row per track
-- segment, not per frame). Created as plain tables with the time column in the primary key;
-- hub.storage.layout then makes them TimescaleDB hypertables or native range-partitioned tables,
-- like events and rule_hits.

CREATE TABLE IF NOT EXISTS health_samples (
    at           timestamptz NOT NULL,
    source_type  text        NOT NULL,          -- camera | device | source
    source_id    text        NOT NULL,
    online       boolean     NOT NULL,
    fps          real,
    latency_ms   real,
    battery      smallint,
    rssi         smallint,
    grid         text,
    data         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (source_id, at)
);
CREATE INDEX IF NOT EXISTS health_samples_at_brin ON health_samples USING brin (at);

CREATE TABLE IF NOT EXISTS track_segments (
    camera_id      text        NOT NULL,
    track_id       bigint      NOT NULL,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz NOT NULL,
    label          text        NOT NULL,
    frames         integer     NOT NULL,
    max_confidence real        NOT NULL,
    first_box      real[]      NOT NULL,
    last_box       real[]      NOT NULL,
    zones          text[]      NOT NULL DEFAULT '{}',
    grid           text,
    PRIMARY KEY (camera_id, track_id, started_at)
);
CREATE INDEX IF NOT EXISTS track_segments_at_brin ON track_segments USING brin (started_at);

-- Partitioned layout only: how far the hourly rollups are materialised (TimescaleDB keeps its own).
CREATE TABLE IF NOT EXISTS rollup_watermarks (
    name    text        PRIMARY KEY,
    through timestamptz NOT NULL
);
