"""Load: replay transformed chunks from the lake into TimescaleDB, idempotently."""
