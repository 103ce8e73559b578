-- Analytics events and generated reports. Both outlive the background jobs that write them
-- (those are memory-tier and gone on restart); rows are written by the journal's writer in its
-- group commit. Times are UTC epoch seconds.

-- One row per `analytics-track` job; the id is the job's, so a rerun records nothing twice.
CREATE TABLE analytics_events (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT,
    event_type  TEXT NOT NULL,
    venue_id    TEXT,
    user_id     TEXT,
    event_id    TEXT,
    data        BLOB NOT NULL,
    occurred_at REAL NOT NULL,
    recorded_at REAL NOT NULL
);

-- Reports read a tenant's events over a period.
CREATE INDEX analytics_events_tenant_time ON analytics_events (tenant_id, occurred_at);
-- Cleanup removes events older than a cutoff, across tenants.
CREATE INDEX analytics_events_time ON analytics_events (occurred_at);

-- One row per `generate-report` job (the id is the job's; a rerun replaces the report).
CREATE TABLE reports (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT,
    user_id      TEXT,
    venue_id     TEXT,
    report_type  TEXT NOT NULL,
    format       TEXT NOT NULL,
    period_start REAL NOT NULL,
    period_end   REAL NOT NULL,
    created_at   REAL NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    job_id       TEXT,
    content      BLOB NOT NULL
);

-- Listings: a tenant's reports, newest first.
CREATE INDEX reports_tenant_created ON reports (tenant_id, created_at);
-- Cleanup removes reports older than a cutoff, across tenants.
CREATE INDEX reports_created ON reports (created_at);
