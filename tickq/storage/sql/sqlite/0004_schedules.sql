-- Cron schedules: a job template enqueued at every slot of a cron expression. Rows are written
-- by the journal's writer; the store keeps all of them in memory (they are few) and this table
-- is what a restart reads back. Times are UTC epoch seconds.
CREATE TABLE schedules (
    name        TEXT PRIMARY KEY,
    cron        TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    -- the job each slot enqueues, JSON: {"queue", "type", "data", "options"}
    template    BLOB NOT NULL,
    -- 'skip' or 'catch_up_once': what a slot missed while nothing ran becomes
    missed      TEXT NOT NULL,
    tenant_id   TEXT,
    user_id     TEXT,
    created_at  REAL NOT NULL,
    -- every slot at or before this time has been claimed
    last_slot   REAL NOT NULL,
    -- claimed slots whose jobs are not known to be enqueued yet (a JSON array), and when
    pending     BLOB NOT NULL DEFAULT '[]',
    pending_at  REAL,
    version     INTEGER NOT NULL DEFAULT 0,
    last_job_id TEXT,
    last_error  TEXT
);
