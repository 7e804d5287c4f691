-- Models loaded on demand: a request that waited for its model to load (a cold request)
-- stores how long, in microseconds. NULL when the model was in memory, for answers from a
-- cache, and for rows written before this column existed.
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS model_load_us BIGINT;
