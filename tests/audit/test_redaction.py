"""The one redaction function on tricky inputs: nested JSON, keys in URLs and
error messages, partial keys and tokens, flags that only look sensitive."""

from __future__ import annotations

import json

import pytest

from audit.redaction import REDACTED, redact, redact_text

KEY = "ifr_ABCDEFGHIJKL_" + "s3cr3t" * 8
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"upstream said: invalid key {KEY} (check it)", KEY),
        (f"GET https://api.example.com/v1/models?api_key={'x' * 24}&limit=5", "x" * 24),
        ("https://host/cb?token=abc123def456&state=ok", "abc123def456"),
        ("Authorization: Bearer sk-proj-0123456789abcdefABCDEF", "sk-proj-0123456789abcdefABCDEF"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        (f"token {JWT} expired", JWT),
        ("partial jwt eyJhbGciOiJIUzI1NiJ9 cut", "eyJhbGciOiJIUzI1NiJ9"),
        (f"truncated key {KEY[:30]}", KEY[:30]),
        (
            "mail from Alice.Smith+test@sub.example.co.uk today",
            "Alice.Smith+test@sub.example.co.uk",
        ),
        ("sk-abcdefghijklmnop leaked in a stack trace", "sk-abcdefghijklmnop"),
    ],
)
def test_secrets_inside_text_are_removed(text, secret):
    out = redact_text(text)
    assert secret not in out and REDACTED in out


def test_the_bare_key_prefix_stays_readable():
    assert redact_text("revoked ifr_ABCDEFGHIJKL by admin") == "revoked ifr_ABCDEFGHIJKL by admin"


def test_nested_json_is_redacted_by_key_and_by_value():
    value = {
        "user": {
            "email": "bob@example.com",
            "password": "hunter2",
            "profile": {"api_key": "whatever"},
        },
        "headers": [{"Authorization": "Bearer abc"}, {"X-Trace": f"key={KEY}"}],
        "has_secret": True,
        "secret_set": False,
        "otp_code": None,
        "deep": [[[{"note": f"see {JWT}"}]]],
        "count": 3,
    }
    out = redact(value)
    dumped = json.dumps(out)
    for secret in ("bob@example.com", "hunter2", "whatever", "Bearer abc", KEY, JWT):
        assert secret not in dumped
    assert out["has_secret"] is True and out["secret_set"] is False and out["otp_code"] is None
    assert out["count"] == 3 and out["user"]["password"] == REDACTED


def test_input_is_not_modified_and_cycles_of_depth_are_bounded():
    value = {"password": "p"}
    redact(value)
    assert value == {"password": "p"}
    deep: dict = {}
    cursor = deep
    for _ in range(50):
        cursor["next"] = {}
        cursor = cursor["next"]
    assert REDACTED in json.dumps(redact(deep))


# One sample per pattern, alone in its text (no other pattern's literal to lean on), in
# the case the pattern allows: the literal pre-check must let each of them through.
PATTERN_SAMPLES = [
    "callback?secret=hunter2hunter2",
    "eyJhbGciOiJI.eyJzdWIiOiIx.sig",
    "ifr_ABCDEFGH_abcdefgh12",
    "ifr_ABCDEFGHIJKLMNOPQRSTU",
    "ifs_ABCDEFGH_abcdefgh12",
    "ifs_ABCDEFGHIJKLMNOPQRSTU",
    "sk-ABCDEFGH1234",
    "BEARER abc.def",
    "BASIC QWxhZGRpbjpvcGVu",
    "eyJhbGciOiJIUzI1",
    "Someone@Example.ORG",
]


def test_the_literal_pre_check_lets_every_pattern_through():
    from audit import redaction

    patterns = [redaction._QUERY_SECRET, *redaction._PATTERNS]
    assert len(PATTERN_SAMPLES) == len(patterns), "a new pattern needs a sample here"
    for pattern, sample in zip(patterns, PATTERN_SAMPLES, strict=True):
        assert pattern.search(sample), (pattern.pattern, sample)
        assert redact_text(sample) != sample, (pattern.pattern, sample)
        assert REDACTED in redact_text(f"prefix {sample} suffix")


def test_text_without_any_literal_is_returned_as_it_is():
    text = "POST /api/llm/v1/chat/completions 200 9f1c2b3a4d5e6f708192a3b4c5d6e7f8"
    assert redact_text(text) is text


def test_the_pre_check_spells_out_every_needle():
    import inspect

    from audit import redaction

    source = inspect.getsource(redaction.redact_text)
    for needle in redaction._NEEDLES:
        assert f'"{needle}" in lowered' in source, needle
