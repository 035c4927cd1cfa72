"""Looking into what the pipeline produced: lake status, DuckDB views over the lake, quarantine
tools and queries of TimescaleDB. Read-only except quarantine reprocessing, which asks the
orchestrator."""
