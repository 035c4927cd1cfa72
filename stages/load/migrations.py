"""Versioned schema migrations, applied in order; each is recorded in the same transaction that
applies it (sqlite-utils style), under an advisory lock so concurrent loaders do not race."""

from __future__ import annotations

from importlib import resources

import psycopg

MIGRATION_LOCK = 0x68697374  # "hist"


def _migrations() -> list[tuple[int, str, str]]:
    files = sorted((p for p in resources.files("stages.load").joinpath("sql").iterdir() if p.name.endswith(".sql")),
                   key=lambda p: p.name)
    return [(int(p.name[:4]), p.name.removesuffix(".sql"), p.read_text()) for p in files]


def missing(conn: psycopg.Connection) -> list[str]:
    """The names of the migrations this database has not applied (all of them on an empty one)."""
    exists = conn.execute("SELECT to_regclass('hist_schema_migrations')").fetchone()
    done = {row[0] for row in conn.execute("SELECT version FROM hist_schema_migrations")} if exists and exists[0] \
        else set()
    return [name for version, name, _ in _migrations() if version not in done]


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply every migration the database lacks; returns the names applied."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS hist_schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM hist_schema_migrations")}
        for version, name, sql in _migrations():
            if version in done:
                continue
            conn.execute(sql.encode())  # a trusted file of several statements, run as one query
            conn.execute("INSERT INTO hist_schema_migrations (version, name) VALUES (%s, %s)",
                         (version, name))
            applied.append(name)
    return applied
