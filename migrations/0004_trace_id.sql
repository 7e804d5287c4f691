-- The request's W3C trace id (32 hex digits): the client's `traceparent` trace when it
-- sent one, else the one the gateway started and answered in its own `traceparent`. NULL
-- for rows written before this column existed.
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS trace_id TEXT;
