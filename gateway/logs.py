"""Logging: one line per request, text or JSON, with every line passed through redaction.

Redaction happens where records are made, not at call sites: a LogRecord factory masks credentials in every
record's message and traceback whatever logger made it and whatever handler gets it (gunicorn's, a test's, one an
operator adds), so a secret that reaches a log call by accident (an upstream body quoted in an exception, say) is
still masked. The same step escapes control characters in messages, and the access line escapes each value: an
encoded newline in a path (``%0a``) cannot start a forged line. The gateway's own handler redacts what it writes
once more, with the configured API keys.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .redact import redact

ACCESS_LOGGER = "gateway.access"


class RedactingFormatter(logging.Formatter):
    def __init__(self, json_format: bool, secrets: tuple[str, ...] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.json_format = json_format
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        if self.json_format:
            payload: dict[str, Any] = {
                "ts": round(record.created, 3),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
            payload.update(getattr(record, "fields", {}))
            if record.exc_info:
                payload["exc"] = record.exc_text or self.formatException(record.exc_info)
            text = json.dumps(payload, ensure_ascii=False, default=str)
        else:
            text = super().format(record)
        return redact(text, self.secrets)


_handler: logging.Handler | None = None
# The configured API keys, masked in every record too.
_secrets: tuple[str, ...] = ()
_plain_factory = logging.getLogRecordFactory()
_tracebacks = logging.Formatter()


def _make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every record, from any logger: its message redacted and escaped, its traceback redacted."""
    record = _plain_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format call: logging reports it when a handler formats it
        return record
    clean = printable(redact(message, _secrets), limit=None)
    if clean is not message:
        record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(_tracebacks.formatException(record.exc_info), _secrets)  # what formatters print
    if record.stack_info:
        record.stack_info = redact(record.stack_info, _secrets)
    return record


def configure(level: str, json_format: bool, secrets: tuple[str, ...] = ()) -> None:
    """Install one redacting handler on the ``gateway`` logger, and the redacting record factory for every
    logger (idempotent: tests build many apps)."""
    global _handler, _secrets
    _secrets = secrets
    if logging.getLogRecordFactory() is not _make_record:
        logging.setLogRecordFactory(_make_record)
    logger = logging.getLogger("gateway")
    if _handler is None:
        _handler = logging.StreamHandler()
        logger.addHandler(_handler)
        logger.propagate = True
    _handler.setFormatter(RedactingFormatter(json_format, secrets))
    logger.setLevel(level)
    for noisy in ("urllib3", "google.auth"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))


#: A logged value a client chose is cut to this many characters.
MAX_VALUE_CHARS = 200


def printable(value: str | None, limit: int | None = MAX_VALUE_CHARS) -> str | None:
    """A client's string as a log can carry it: control characters and lone surrogates escaped, length cut."""
    if value is None:
        return None
    if limit is not None and len(value) > limit:
        value = value[:limit] + "..."
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in value)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass
class AccessRecord:
    """What the access line says about one request; filled in as the request goes."""

    method: str
    path: str
    family: str
    started: float = field(default_factory=time.perf_counter)
    # The model id the request resolved to, and the name the client sent (any string, up to the body limit).
    model: str | None = None
    requested: str | None = None
    status: int | None = None
    stream: bool = False

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def emit(self, outcome: Any | None) -> None:
        fields: dict[str, Any] = {
            "method": printable(self.method),
            "path": printable(self.path),
            "family": self.family,
            "model": self.model,
            "requested": printable(self.requested) if self.requested != self.model else None,
            "status": self.status,
            "stream": self.stream,
            "latency_ms": round(self.elapsed() * 1000, 1),
        }
        if outcome is not None:
            fields["account"] = outcome.account
            fields["attempts"] = outcome.attempts
            fields["tokens_in"] = outcome.usage.prompt_tokens
            fields["tokens_out"] = outcome.usage.output_tokens + outcome.usage.thinking_tokens
        line = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        logging.getLogger(ACCESS_LOGGER).info(line, extra={"fields": fields})
