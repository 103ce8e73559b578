-- Provider token buckets shared by every node on this database, so that N nodes together stay
-- within one provider's limit instead of N times it. Nodes lease tokens in small batches
-- (`postgres_buckets`); the refill is computed from the database clock, so node clocks do not
-- matter. `granted` is what the latest lease took, read back by that statement.
CREATE TABLE provider_buckets (
    bucket      text PRIMARY KEY,
    rate        double precision NOT NULL,
    burst       double precision NOT NULL,
    tokens      double precision NOT NULL,
    granted     integer NOT NULL DEFAULT 0,
    refilled_at timestamptz NOT NULL
);

-- The bucket's level at `at`: what it held at `since` plus the refill since, never above burst
-- and never refilled backwards if the database clock steps back.
CREATE FUNCTION provider_bucket_level(tokens double precision, rate double precision,
                                      burst double precision, since timestamptz,
                                      at timestamptz)
RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT least(burst, tokens + greatest(0, extract(epoch FROM at - since)::double precision)
                                 * rate)
$$;
