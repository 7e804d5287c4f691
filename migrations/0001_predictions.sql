-- The prediction log. Keeps the columns of the stack infergate replaces (id, created_at,
-- input_features, image_hash, prediction, top_class, confidence, all_predictions) and adds
-- what an operator joins and filters on.

-- A `predictions` table from the replaced stack (no prediction_id column) is kept, renamed,
-- rather than dropped or mixed with ours.
DO $$
BEGIN
    IF to_regclass('predictions') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema()
          AND table_name = 'predictions'
          AND column_name = 'prediction_id'
    ) THEN
        ALTER TABLE predictions RENAME TO predictions_legacy;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS predictions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The UUIDv7 returned to the client; unique, so a replayed row is never stored twice.
    prediction_id   UUID        NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    request_id      TEXT        NOT NULL,
    model_name      TEXT        NOT NULL,
    model_version   TEXT        NOT NULL,
    -- hit-l1, hit-l2, miss, coalesced or bypass
    cache_status    TEXT        NOT NULL,
    -- The cache key's hash (xxh3-128, 32 hex digits): equal inputs share it.
    input_hash      TEXT        NOT NULL,
    input_features  REAL[],
    image_hash      TEXT,
    prediction      TEXT        NOT NULL,
    top_class       INTEGER,
    confidence      REAL        NOT NULL,
    all_predictions JSONB       NOT NULL,
    -- Request head to answer, microseconds.
    latency_us      BIGINT      NOT NULL,
    -- NULL unless prediction_log.log_client_addr is on.
    client_addr     INET
);

CREATE INDEX IF NOT EXISTS predictions_created_at_idx ON predictions (created_at);
CREATE INDEX IF NOT EXISTS predictions_input_hash_idx ON predictions (input_hash);
CREATE INDEX IF NOT EXISTS predictions_image_hash_idx ON predictions (image_hash)
    WHERE image_hash IS NOT NULL;
