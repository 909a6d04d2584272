CREATE TABLE IF NOT EXISTS coalition_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
