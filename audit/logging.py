"""A logging filter that passes every log line through the one redaction function."""

from __future__ import annotations

import logging

import orjson

from audit.redaction import redact, redact_text

# The attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}
_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Redacts every field of a log line, not only the message: the arguments (merged
    into the message), each ``extra`` field, the exception text and the stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw template only
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            # Formatted once here, redacted; formatters use exc_text when it is set.
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD:
                setattr(
                    record, name, redact(value) if not isinstance(value, int | float) else value
                )
        return True


class JsonFormatter(logging.Formatter):
    converter = __import__("time").gmtime

    """One JSON object per line: time, level, logger, message and the request fields."""

    FIELDS = ("request_id", "org", "principal", "method", "route", "status", "latency_ms")

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                payload[name] = value
        if record.exc_text:
            payload["exception"] = redact_text(record.exc_text)
        elif record.exc_info:
            payload["exception"] = redact_text(self.formatException(record.exc_info))
        # orjson: a tenth of json.dumps's time on the gateway's one line per request.
        return orjson.dumps(payload, default=str).decode()
