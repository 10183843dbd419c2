-- The closed loop: lifecycle columns, SLA timers, the durable dispatch queue (outbox) and silences.

ALTER TABLE incidents
    ADD COLUMN IF NOT EXISTS department   text        NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS level        smallint    NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS overdue      boolean     NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS dispatched_at timestamptz,
    ADD COLUMN IF NOT EXISTS accepted_at  timestamptz,
    ADD COLUMN IF NOT EXISTS arrived_at   timestamptz,
    ADD COLUMN IF NOT EXISTS resolved_at  timestamptz,
    ADD COLUMN IF NOT EXISTS closed_at    timestamptz,
    ADD COLUMN IF NOT EXISTS supervised_at timestamptz,
    ADD COLUMN IF NOT EXISTS assignee     text,
    ADD COLUMN IF NOT EXISTS satisfaction text,
    ADD COLUMN IF NOT EXISTS false_alarm_reason text,
    ADD COLUMN IF NOT EXISTS idem_key     text,
    ADD COLUMN IF NOT EXISTS dedup_keys   jsonb       NOT NULL DEFAULT '[]'::jsonb;
CREATE UNIQUE INDEX IF NOT EXISTS incidents_idem_key ON incidents (idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS incidents_open_last_seen ON incidents (last_seen DESC)
    WHERE state NOT IN ('closed', 'false_alarm');

ALTER TABLE incident_history
    ADD COLUMN IF NOT EXISTS from_state  text,
    ADD COLUMN IF NOT EXISTS level       smallint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS attachments jsonb    NOT NULL DEFAULT '[]'::jsonb;

-- SLA timers live here, not in memory: a restarted hub fires what fell due while it was down.
CREATE TABLE IF NOT EXISTS sla_timers (
    id          bigserial   PRIMARY KEY,
    incident_id text        NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind        text        NOT NULL CHECK (kind IN ('accept', 'resolve')),
    level       smallint    NOT NULL DEFAULT 0,
    due_at      timestamptz NOT NULL,
    fired_at    timestamptz,
    cancelled   boolean     NOT NULL DEFAULT false,
    UNIQUE (incident_id, kind, level)
);
CREATE INDEX IF NOT EXISTS sla_timers_due ON sla_timers (due_at) WHERE fired_at IS NULL AND NOT cancelled;

-- Outbox / work queue: written in the same transaction as the transition that caused it.
CREATE TABLE IF NOT EXISTS dispatch_jobs (
    id           bigserial   PRIMARY KEY,
    key          text        NOT NULL UNIQUE,
    queue        text        NOT NULL,
    incident_id  text        NOT NULL,
    channel      jsonb       NOT NULL,
    notice       jsonb       NOT NULL,
    state        text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),
    attempts     integer     NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    leased_by    text,
    last_error   text        NOT NULL DEFAULT '',
    relayed      boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    done_at      timestamptz
);
CREATE INDEX IF NOT EXISTS dispatch_jobs_ready ON dispatch_jobs (next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS dispatch_jobs_dead ON dispatch_jobs (created_at DESC) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS dispatch_jobs_unrelayed ON dispatch_jobs (id) WHERE NOT relayed;
CREATE INDEX IF NOT EXISTS dispatch_jobs_incident ON dispatch_jobs (incident_id);

CREATE TABLE IF NOT EXISTS silences (
    id         bigserial   PRIMARY KEY,
    grid       text,
    source     text,
    kinds      text[]      NOT NULL DEFAULT '{}',
    starts_at  timestamptz NOT NULL DEFAULT now(),
    ends_at    timestamptz NOT NULL,
    reason     text        NOT NULL DEFAULT '',
    created_by text        NOT NULL DEFAULT 'config',
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((grid IS NULL) <> (source IS NULL)),
    CHECK (ends_at > starts_at)
);
CREATE INDEX IF NOT EXISTS silences_active ON silences (ends_at);

-- Deadlines of the running SLA timers, kept beside the incident for lists and the big screen.
ALTER TABLE incidents
    ADD COLUMN IF NOT EXISTS accept_due  timestamptz,
    ADD COLUMN IF NOT EXISTS resolve_due timestamptz;
