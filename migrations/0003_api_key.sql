-- The name of the API key a prediction was asked with (auth.keys_file), never the key;
-- NULL for an open gateway, the check socket, and rows written before this column existed.
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS api_key TEXT;
