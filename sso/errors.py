"""The one exception the SSO protocol code raises.

``reason`` is a stable machine code (``bad_audience``, ``bad_nonce``,
``expired``, ``bad_signature``, ``replayed``, ``unsigned``, ``bad_state``,
``idp_error``, ``fetch_failed``, ...) that ends up in the audit record;
``message`` is a short text safe to show the person signing in (never a token,
a secret or a stack trace).
"""

from __future__ import annotations


class SsoError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")
