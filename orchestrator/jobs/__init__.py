"""A job's life: plan (pure), launch, store (SQLite), watch, logs, stop."""
