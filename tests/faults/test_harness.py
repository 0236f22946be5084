"""The fault suite's own rules, without services: how long a scenario runs, and
which Redis topology it runs on."""

from __future__ import annotations

import pytest

from tests.faults.harness import fault_seconds, redis_topologies


def test_a_scenario_never_runs_less_than_60_seconds_in_ci(monkeypatch):
    monkeypatch.setenv("INFERIA_FAULTS_SECONDS", "5")
    monkeypatch.delenv("CI", raising=False)
    assert fault_seconds() == 5  # locally, shorter runs while working on the suite
    monkeypatch.setenv("CI", "true")
    assert fault_seconds() == 60
    monkeypatch.setenv("INFERIA_FAULTS_SECONDS", "90")
    assert fault_seconds() == 90
    monkeypatch.delenv("INFERIA_FAULTS_SECONDS")
    assert fault_seconds() == 60


def test_the_redis_topology_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("INFERIA_FAULTS_REDIS", raising=False)
    assert redis_topologies() == ["single"]
    monkeypatch.setenv("INFERIA_FAULTS_REDIS", "cluster")
    assert redis_topologies() == ["cluster"]
    monkeypatch.setenv("INFERIA_FAULTS_REDIS", "sentinel")
    with pytest.raises(ValueError, match="single or cluster"):
        redis_topologies()
