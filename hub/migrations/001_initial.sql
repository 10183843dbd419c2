-- Source events, rule hits, alerts, incidents and their history.
-- Time-series tables (events, rule_hits) carry the time column in their primary key so
-- they can become TimescaleDB hypertables; re-inserting the same (id, at) is a no-op.

CREATE TABLE IF NOT EXISTS events (
    id        text        NOT NULL,
    at        timestamptz NOT NULL,
    source_id text        NOT NULL,
    kind      text        NOT NULL,
    grid      text,
    data      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (id, at)
);
CREATE INDEX IF NOT EXISTS events_at_brin ON events USING brin (at);
CREATE INDEX IF NOT EXISTS events_source_at ON events (source_id, at DESC);

CREATE TABLE IF NOT EXISTS rule_hits (
    id          text        NOT NULL,
    at          timestamptz NOT NULL,
    camera_id   text        NOT NULL,
    rule        text        NOT NULL,
    zone        text,
    track_id    integer     NOT NULL,
    label       text        NOT NULL,
    confidence  real        NOT NULL,
    box         real[]      NOT NULL,
    captured_at timestamptz NOT NULL,
    frame_seq   bigint      NOT NULL,
    PRIMARY KEY (id, at)
);
CREATE INDEX IF NOT EXISTS rule_hits_at_brin ON rule_hits USING brin (at);
CREATE INDEX IF NOT EXISTS rule_hits_camera_at ON rule_hits (camera_id, at DESC);

CREATE TABLE IF NOT EXISTS incidents (
    id         text        PRIMARY KEY,
    class      text        NOT NULL DEFAULT 'general',
    state      text        NOT NULL DEFAULT 'received',
    grid       text,
    title      text        NOT NULL DEFAULT '',
    kind       text        NOT NULL,
    opened_at  timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    sources    jsonb       NOT NULL DEFAULT '[]'::jsonb,
    evidence   jsonb       NOT NULL DEFAULT '[]'::jsonb,
    count      integer     NOT NULL DEFAULT 1,
    last_seen  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT incidents_class_check CHECK (class IN ('general', 'professional', 'emergency'))
);
CREATE INDEX IF NOT EXISTS incidents_opened_at ON incidents (opened_at DESC);
CREATE INDEX IF NOT EXISTS incidents_state ON incidents (state, opened_at DESC);
CREATE INDEX IF NOT EXISTS incidents_grid ON incidents (grid, opened_at DESC);

CREATE TABLE IF NOT EXISTS incident_history (
    id          bigserial   PRIMARY KEY,
    incident_id text        NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    state       text        NOT NULL,
    action      text,
    actor       text        NOT NULL DEFAULT 'system',
    at          timestamptz NOT NULL DEFAULT now(),
    note        text        NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS incident_history_incident ON incident_history (incident_id, at);

-- One alert = one trigger (a rule hit or a source event) that opened or joined an incident.
CREATE TABLE IF NOT EXISTS alerts (
    id          text        PRIMARY KEY,
    at          timestamptz NOT NULL,
    kind        text        NOT NULL,
    source_type text        NOT NULL,
    source_id   text        NOT NULL,
    rule        text,
    zone        text,
    grid        text,
    incident_id text,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS alerts_at_brin ON alerts USING brin (at);
CREATE INDEX IF NOT EXISTS alerts_incident ON alerts (incident_id);
