"""The run-wide scan for credentials in audit rows and log lines can fail."""

from __future__ import annotations

import logging

from tests import conftest


def test_the_scanner_catches_a_key_an_email_and_a_password():
    before = len(conftest.LEAKS)
    for text in ("ifr_ABCDEFGHIJKL_" + "z" * 50, "mail bob@example.com", conftest.PASSWORD):
        conftest._scan("probe", text)
    try:
        assert len(conftest.LEAKS) == before + 3
    finally:
        del conftest.LEAKS[before:]


def test_log_lines_are_scanned_after_redaction():
    before = len(conftest.LEAKS)
    handler = conftest._LeakScanHandler()
    record = logging.getLogger("probe").makeRecord(
        "probe", logging.INFO, __file__, 1, "pw=%s", (conftest.PASSWORD,), None
    )
    handler.emit(record)  # the password is not a pattern the redaction knows: the scan must see it
    try:
        assert len(conftest.LEAKS) == before + 1
    finally:
        del conftest.LEAKS[before:]
