-- The audit trail of operator actions, shared by every node on this database: an action taken
-- through one node's API is listed by every node's `GET /api/v1/queue/audit`.
CREATE TABLE audit_log (
    seq     bigserial PRIMARY KEY,
    at      double precision NOT NULL,
    action  text NOT NULL,
    entry   jsonb NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, seq);
