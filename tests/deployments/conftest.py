"""Fixtures of tests/deployments (management: tests.deployments.mgmt_fixtures)."""

from __future__ import annotations

from tests.deployments.mgmt_fixtures import test_launcher, world  # noqa: F401
