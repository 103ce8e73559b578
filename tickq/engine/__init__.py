"""The pure core: job records and their state machine, queues and job types, dispatch, retry and
backoff, rate limits and circuit breakers. No SQL and no HTTP; time comes from an injected clock."""
