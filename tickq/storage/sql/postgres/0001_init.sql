-- The jobs of the durable queues, shared by every node on the database. Times are UTC epoch
-- seconds as double precision (the engine's floats, round-tripped exactly); data, result and
-- errors are the JSON bytes the engine wrote, kept byte for byte.
CREATE TABLE jobs (
    id              text PRIMARY KEY,
    queue           text NOT NULL,
    type            text NOT NULL,
    data            bytea NOT NULL,
    tenant_id       text,
    user_id         text,
    priority        integer NOT NULL,
    state           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    run_at          double precision NOT NULL,
    lease_until     double precision,
    idempotency_key text,
    progress        integer NOT NULL DEFAULT 0,
    result          bytea,
    errors          bytea,
    created_at      double precision NOT NULL,
    started_at      double precision,
    finished_at     double precision,
    expires_at      double precision,
    callback_url    text,
    ordering_key    text,
    stalls          integer NOT NULL DEFAULT 0,
    key_until       double precision,
    -- grows by one on every claim; a state write naming an older one is dropped
    claim_token     bigint NOT NULL DEFAULT 0,
    -- the node (its advisory lock key) holding the claim while the job is active
    claimed_by      bigint,
    -- true while the job holds its idempotency key: live jobs, and completed ones until their
    -- hold is released (key_until passed and an enqueue or the key sweep noticed)
    key_hold        boolean NOT NULL DEFAULT false
) WITH (fillfactor = 90);
-- fillfactor leaves room on each page so that lease renewals and progress (no indexed column
-- changes) are HOT updates.

-- Claims: the waiting jobs of a queue by priority, tenant and type, oldest first within each.
-- The (priority, tenant, type) runs are what the claim walks (a loose index scan), so a
-- throttled provider's backlog is skipped as a whole instead of row by row.
CREATE INDEX jobs_ready ON jobs (queue, priority DESC, (coalesce(tenant_id, '')) DESC,
                                 type DESC, run_at, id)
    WHERE state = 'waiting';

-- When the next delayed job is due, the oldest due job, and the delayed count.
CREATE INDEX jobs_due ON jobs (queue, run_at) WHERE state = 'waiting';

-- Running jobs, for lease expiry and dead-node rescue. No lease column in the key, so renewing
-- a lease touches no index.
CREATE INDEX jobs_active ON jobs (queue) WHERE state = 'active';

-- Finished jobs: per-state counts, retention, listings of recent completions.
CREATE INDEX jobs_finished ON jobs (queue, state, finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');

-- The dead-letter queue, newest first.
CREATE INDEX jobs_dead ON jobs (id) WHERE state = 'failed';

-- Idempotency, enforced here: of two jobs with one key (per tenant) only one may hold it.
CREATE UNIQUE INDEX jobs_key ON jobs ((coalesce(tenant_id, '')), idempotency_key)
    WHERE key_hold;

-- Completed jobs' holds, by when they end (the key sweep).
CREATE INDEX jobs_key_ends ON jobs (key_until) WHERE key_hold AND state = 'completed';

-- One more entry on a job's JSON error history, without decoding it: errors is always the
-- compact JSON array the engine wrote (or null), so the entry goes before the closing bracket.
CREATE FUNCTION append_error(errors bytea, entry bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN entry IS NULL THEN errors
        WHEN errors IS NULL OR length(errors) <= 2 THEN '['::bytea || entry || ']'::bytea
        ELSE substring(errors FROM 1 FOR length(errors) - 1) || ','::bytea || entry || ']'::bytea
    END
$$;

-- Paused queues, shared by every node.
CREATE TABLE queue_state (
    name   text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false
);

-- One row per `analytics-track` job; the id is the job's, so a rerun records nothing twice.
CREATE TABLE analytics_events (
    id          text PRIMARY KEY,
    tenant_id   text,
    event_type  text NOT NULL,
    venue_id    text,
    user_id     text,
    event_id    text,
    data        bytea NOT NULL,
    occurred_at double precision NOT NULL,
    recorded_at double precision NOT NULL
);
CREATE INDEX analytics_events_tenant_time ON analytics_events (tenant_id, occurred_at);
CREATE INDEX analytics_events_time ON analytics_events (occurred_at);

-- One row per `generate-report` job (the id is the job's; a rerun replaces the report).
CREATE TABLE reports (
    id           text PRIMARY KEY,
    tenant_id    text,
    user_id      text,
    venue_id     text,
    report_type  text NOT NULL,
    format       text NOT NULL,
    period_start double precision NOT NULL,
    period_end   double precision NOT NULL,
    created_at   double precision NOT NULL,
    content_type text NOT NULL,
    size         integer NOT NULL,
    job_id       text,
    content      bytea NOT NULL
);
CREATE INDEX reports_tenant_created ON reports (tenant_id, created_at);
CREATE INDEX reports_created ON reports (created_at);
