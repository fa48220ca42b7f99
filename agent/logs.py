"""Structured logs: one JSON object per line on stderr (journald keeps it as is).

Fields passed with ``extra={...}`` become top-level keys, so a log line like
``log.warning("command rejected", extra={"reason": "bad-signature"})`` can be
filtered by reason in any log shipper.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

from shared import settings as common

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        return base + ("" if not extras else " " + " ".join(f"{k}={v}" for k, v in extras.items()))


def setup(settings: common.LoggingSettings) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    root.handlers[:] = [handler]
    apply_level(settings)


def apply_level(settings: common.LoggingSettings) -> None:
    logging.getLogger().setLevel(settings.level)
    # aiokafka logs every failed reconnect at ERROR, many times a second during
    # an outage; the agent logs (and reports) the outage once, itself.
    logging.getLogger("aiokafka").setLevel(logging.DEBUG if settings.level == "DEBUG" else logging.CRITICAL)
