-- The seed's init-db/01-schema.sql for the tabular API (../shared/seeds/, §2.2).
CREATE TABLE IF NOT EXISTS predictions (
    id SERIAL PRIMARY KEY,
    input_features TEXT NOT NULL,
    prediction REAL NOT NULL,
    confidence REAL NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_created_at ON predictions(created_at);
CREATE INDEX idx_confidence ON predictions(confidence);
