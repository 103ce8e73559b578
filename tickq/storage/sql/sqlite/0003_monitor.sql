-- What the monitor keeps: the alerts it raised and a snapshot of every queue at every check.
-- Rows are written by the journal's writer in its group commit. Times are UTC epoch seconds.

-- One row per alert. AUTOINCREMENT keeps the highest id ever given in sqlite_sequence, so an id
-- is never given twice even after retention removed every row: delivery jobs are keyed
-- `alert-<id>-<channel>`, and a reused id would find the old alert's key. The store assigns ids
-- itself (one process owns the file) and sqlite_sequence follows the explicit ids it inserts.
CREATE TABLE alert_history (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    severity        TEXT NOT NULL,
    alert_type      TEXT NOT NULL,
    message         TEXT NOT NULL,
    queue_name      TEXT,
    metric_value    REAL,
    threshold_value REAL,
    -- channel -> outcome, a JSON object
    channels        TEXT NOT NULL DEFAULT '{}',
    acknowledged    INTEGER NOT NULL DEFAULT 0,
    acknowledged_by TEXT,
    acknowledged_at REAL,
    created_at      REAL NOT NULL
);

-- Listings filter by severity over the recent past; retention removes by age.
CREATE INDEX alert_history_severity_created ON alert_history (severity, created_at);
CREATE INDEX alert_history_created ON alert_history (created_at);

-- An append-only time series: one row per queue per monitor check.
CREATE TABLE queue_metrics (
    queue_name      TEXT NOT NULL,
    waiting_count   INTEGER NOT NULL,
    delayed_count   INTEGER NOT NULL,
    active_count    INTEGER NOT NULL,
    completed_count INTEGER NOT NULL,
    failed_count    INTEGER NOT NULL,
    oldest_age_s    REAL,
    captured_at     REAL NOT NULL
);

-- Dashboards read one queue over a period; retention removes by age across queues.
CREATE INDEX queue_metrics_queue_captured ON queue_metrics (queue_name, captured_at);
CREATE INDEX queue_metrics_captured ON queue_metrics (captured_at);
