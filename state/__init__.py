"""The domain core of pgmove: records, the migration state machine, errors, the Redis store."""
