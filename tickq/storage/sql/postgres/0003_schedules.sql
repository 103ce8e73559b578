-- Cron schedules: a job template enqueued at every slot of a cron expression. Every node reads
-- them here; a slot is claimed by a compare-and-set on `version`, so of the nodes that see one
-- slot due exactly one enqueues it. Times are UTC epoch seconds.
CREATE TABLE schedules (
    name        text PRIMARY KEY,
    cron        text NOT NULL,
    timezone    text NOT NULL,
    -- the job each slot enqueues, JSON bytes: {"queue", "type", "data", "options"}
    template    bytea NOT NULL,
    -- 'skip' or 'catch_up_once': what a slot missed while nothing ran becomes
    missed      text NOT NULL,
    tenant_id   text,
    user_id     text,
    created_at  double precision NOT NULL,
    -- every slot at or before this time has been claimed
    last_slot   double precision NOT NULL,
    -- claimed slots whose jobs are not known to be enqueued yet, and when they were claimed
    pending     double precision[] NOT NULL DEFAULT '{}',
    pending_at  double precision,
    version     bigint NOT NULL DEFAULT 0,
    last_job_id text,
    last_error  text
);
