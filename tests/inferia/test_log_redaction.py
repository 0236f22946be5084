"""Every console log line passes through the redaction function."""

from __future__ import annotations

import io
import logging

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
