"""`hist doctor`: is everything hist needs in place? One check per line, each ok or the reason it
failed, in the order a new user would fix them. Nothing here changes anything but a probe file in the
lake's tmp folder, and the API key and database password are never shown."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lake.errors import HistError
from lake.storage import Lake, open_lake
from schemas.config import HistConfig, load_config
from schemas.secrets import Secret, mask_dsn


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(config_path: Path, lake_url: str, database_url: str | None) -> Iterator[Check]:
    try:
        config = load_config(config_path)
    except HistError as exc:
        yield Check("config", False, str(exc))
        return
    yield Check("config", True, f"{config_path} ({len(config.jobs)} jobs)")
    key = os.environ.get(config.api.key_env_var, "")
    yield Check("api key", bool(key), f"{config.api.key_env_var} is set" if key else
                f"{config.api.key_env_var} is not set: export your Databento API key in it")
    yield _probe("gateway", lambda: _gateway(config, key))
    yield _probe("database", lambda: _database(database_url))
    yield _probe("lake", lambda: open_lake(lake_url).check_writable())
    yield _probe("manifest", lambda: _manifest(open_lake(lake_url)))


def _probe(name: str, check: Callable[[], str]) -> Check:
    """Run one check; any failure becomes its one-line reason."""
    try:
        return Check(name, True, check())
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Check(name, False, mask_dsn(reason))


def _gateway(config: HistConfig, key: str) -> str:
    import databento

    from stages.extract.errors import classify

    gateway = os.environ.get("DATABENTO_GATEWAY") or config.api.gateway
    if not key:
        raise HistError("not asked: no API key")
    client = databento.Historical(key=key, gateway=gateway) if gateway else databento.Historical(key=key)
    try:
        datasets = client.metadata.list_datasets()
    except Exception as exc:
        raise classify(exc, key) from None
    return f"{gateway or 'Databento'} answers ({len(datasets)} datasets)"


def _database(database_url: str | None) -> str:
    from stages.load.database import connect
    from stages.load.migrations import missing

    if not database_url:
        raise HistError("HIST_DATABASE_URL is not set")
    with connect(Secret(database_url), attempts=1) as conn:
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        if row is None:
            raise HistError(f"{mask_dsn(database_url)} answers but has no timescaledb extension: run hist db init")
        pending = missing(conn)
    if pending:
        raise HistError(f"timescaledb {row[0]}, but {len(pending)} migrations to apply ({', '.join(pending)}):"
                        " run hist db init")
    return f"{mask_dsn(database_url)}: timescaledb {row[0]}, migrations current"


def _manifest(lake: Lake) -> str:
    manifest = lake.manifest()
    if not manifest.written():
        return f"{manifest.describe()} not written yet (an empty lake)"
    events = sum(1 for _ in manifest.events())
    return f"{manifest.describe()}: {events} events"
