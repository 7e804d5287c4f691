-- The seed's init-db/01-schema.sql for the image model server (../shared/seeds/).
CREATE TABLE IF NOT EXISTS predictions (
    id SERIAL PRIMARY KEY,
    image_hash VARCHAR(32) NOT NULL,
    top_class INTEGER NOT NULL,
    confidence REAL NOT NULL,
    all_predictions JSONB,
    created_at TIMESTAMP NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_image_hash ON predictions(image_hash);
CREATE INDEX idx_created_at ON predictions(created_at DESC);
CREATE INDEX idx_confidence ON predictions(confidence DESC);
