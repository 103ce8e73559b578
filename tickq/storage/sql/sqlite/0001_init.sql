-- The job journal. Scheduling happens in memory; this table is what makes it durable and what a
-- restart rebuilds it from. Times are UTC epoch seconds; data/result/errors are JSON bytes.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    queue           TEXT NOT NULL,
    type            TEXT NOT NULL,
    data            BLOB NOT NULL,
    tenant_id       TEXT,
    user_id         TEXT,
    priority        INTEGER NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    max_attempts    INTEGER NOT NULL,
    run_at          REAL NOT NULL,
    lease_until     REAL,
    idempotency_key TEXT,
    progress        INTEGER NOT NULL DEFAULT 0,
    result          BLOB,
    errors          BLOB,
    created_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    expires_at      REAL,
    callback_url    TEXT,
    ordering_key    TEXT,
    stalls          INTEGER NOT NULL DEFAULT 0,
    key_until       REAL
);

-- Indexes are chosen so that a claim (waiting -> active), the most frequent write after the insert,
-- touches none of them: it changes state, attempts, lease_until and started_at only.
-- finished_at IS NULL exactly while a job is waiting or active.

-- What a restart loads: the live jobs only, however many finished ones the file keeps.
CREATE INDEX jobs_live ON jobs (queue) WHERE finished_at IS NULL;

-- Retention, listings and the per-state counts a restart takes (a covering scan) of finished jobs.
CREATE INDEX jobs_finished ON jobs (queue, state, finished_at) WHERE finished_at IS NOT NULL;

-- Completed jobs with an idempotency key hold it until key_until.
CREATE INDEX jobs_key_hold ON jobs (key_until) WHERE key_until IS NOT NULL;

CREATE TABLE queue_state (
    name   TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0
);
