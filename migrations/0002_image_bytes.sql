-- Image predictions: the upload's size in bytes beside its image_hash (NULL for tabular
-- rows, and for image rows written before this column existed).
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS image_bytes INTEGER;
