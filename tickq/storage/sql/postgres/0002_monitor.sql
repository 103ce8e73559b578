-- What the monitor keeps: the alerts it raised and a snapshot of every queue at every check.
-- Times are UTC epoch seconds.

-- One row per alert. The identity's sequence never gives an id twice, even after retention
-- removed every row: delivery jobs are keyed `alert-<id>-<channel>`.
CREATE TABLE alert_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    severity        text NOT NULL,
    alert_type      text NOT NULL,
    message         text NOT NULL,
    queue_name      text,
    metric_value    double precision,
    threshold_value double precision,
    -- channel -> outcome
    channels        jsonb NOT NULL DEFAULT '{}',
    acknowledged    boolean NOT NULL DEFAULT false,
    acknowledged_by text,
    acknowledged_at double precision,
    created_at      double precision NOT NULL
);
CREATE INDEX alert_history_severity_created ON alert_history (severity, created_at);
CREATE INDEX alert_history_created ON alert_history (created_at);

-- An append-only time series: one row per queue per monitor check; seq keeps the order of rows
-- captured at the same time.
CREATE TABLE queue_metrics (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name      text NOT NULL,
    waiting_count   integer NOT NULL,
    delayed_count   integer NOT NULL,
    active_count    integer NOT NULL,
    completed_count integer NOT NULL,
    failed_count    integer NOT NULL,
    oldest_age_s    double precision,
    captured_at     double precision NOT NULL
);
CREATE INDEX queue_metrics_queue_captured ON queue_metrics (queue_name, captured_at);
CREATE INDEX queue_metrics_captured ON queue_metrics (captured_at);
