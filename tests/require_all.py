"""pytest hooks: with INFERIA_REQUIRE_ALL=1 (CI) every skip is a failure.

Whatever raised it (a skip marker, ``pytest.skip``, ``importorskip``, a
module-level skip), not only ``require_or_skip``. Expected failures (xfail)
stay as they are. ``tests/conftest.py`` imports these hooks; the module
imports nothing of Django, so it also loads as a plain plugin
(``-p tests.require_all``).
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("INFERIA_REQUIRE_ALL") == "1"


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped, but INFERIA_REQUIRE_ALL=1 requires every test to run: {_skip_reason(report)}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped:
        report.outcome = "failed"
        report.longrepr = (
            "module skipped, but INFERIA_REQUIRE_ALL=1 requires every test to run: "
            f"{_skip_reason(report)}"
        )
