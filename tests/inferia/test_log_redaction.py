"""Every console log line passes through the redaction function."""

from __future__ import annotations

import io
import logging

import pytest
from django.conf import settings

from audit.logging import RedactingFilter


def test_console_handler_is_configured_with_the_redacting_filter():
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["redact"]
    root = logging.getLogger()
    console = [
        h
        for h in root.handlers
        if isinstance(h, logging.StreamHandler) and not hasattr(h, "records")
    ]
    assert any(any(isinstance(f, RedactingFilter) for f in h.filters) for h in console)


def test_keys_tokens_and_emails_are_removed_from_log_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("inferia.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        key = "ifr_ABCDEFGHIJKL_" + "x" * 50
        logger.warning(
            "upstream said %s for %s (user %s, auth %s)",
            "sk-live-abcdefghijklmnop",
            key,
            "alice@example.com",
            "Bearer eyJhbGciOi.eyJzdWIiOi.sig",
        )
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    for secret in ("sk-live-abcdefghijklmnop", key, "alice@example.com", "eyJhbGciOi"):
        assert secret not in line
    assert "upstream said" in line and "[REDACTED]" in line


def _capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"inferia.test.redaction.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    return logger, stream


SECRET_KEY = "sk-live0123456789abcdefSECRET"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlX2hlcmU"


def test_extra_fields_are_redacted_in_json_lines():
    from audit.logging import JsonFormatter

    logger, stream = _capture(JsonFormatter())
    logger.warning(
        "upstream refused",
        extra={"principal": f"Bearer {JWT}", "route": f"/v1?api_key={SECRET_KEY}"},
    )
    line = stream.getvalue()
    assert "upstream refused" in line and "[REDACTED]" in line
    assert SECRET_KEY not in line and JWT not in line


def test_extra_fields_are_redacted_for_any_formatter():
    logger, stream = _capture(logging.Formatter("%(message)s %(upstream_key)s %(context)s"))
    logger.error("call failed", extra={"upstream_key": SECRET_KEY, "context": {"token": "abc"}})
    line = stream.getvalue()
    assert "call failed" in line and SECRET_KEY not in line and "abc" not in line


@pytest.mark.parametrize("formatter", ["text", "json"])
def test_exception_text_is_redacted(formatter):
    from audit.logging import JsonFormatter

    fmt = JsonFormatter() if formatter == "json" else logging.Formatter("%(message)s")
    logger, stream = _capture(fmt)
    try:
        raise ValueError(f"upstream said: invalid key {SECRET_KEY} for bob@example.com")
    except ValueError:
        logger.exception("request failed")
    line = stream.getvalue()
    assert "ValueError" in line and "request failed" in line
    assert SECRET_KEY not in line and "bob@example.com" not in line
