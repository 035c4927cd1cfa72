"""Logging set-up: human lines or JSON lines (one object per event, for machines), both masked."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

from schemas.secrets import mask_dsn

LogFormat = Literal["text", "json"]
EVENT_FIELDS = ("event", "stage", "chunk_id", "chunks", "failed", "records", "rows", "rule", "attempt")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_dsn(record.getMessage()),
        }
        entry.update({k: getattr(record, k) for k in EVENT_FIELDS if hasattr(record, k)})
        return json.dumps(entry, default=str)


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_dsn(super().format(record))


def configure_logging(verbose: bool, quiet: bool, fmt: LogFormat) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logging.ERROR if quiet else logging.INFO if verbose or fmt == "json" else logging.WARNING
    logging.basicConfig(level=level, handlers=[handler], force=True)
