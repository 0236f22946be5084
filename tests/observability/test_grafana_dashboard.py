"""deploy/grafana/inferia.json: a dashboard Grafana can import, whose every query reads
series that exist (in docs/metrics.md and in the registry) with labels they carry."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from inferia import metrics
from tests.observability.test_metrics_series import documented_series

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "inferia.json"
SELECTOR = re.compile(r"\b(inferia_[a-z_]+)\b(?:\{([^}]*)\})?")
MATCHER_LABEL = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _queries(dashboard: dict) -> list[tuple[str, str]]:
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    return found


def _series_labels() -> dict[str, set[str]]:
    """Every name a query may use (a counter's ``_total``, a histogram's ``_bucket``,
    ``_sum``, ``_count``) -> the labels it carries, from docs/metrics.md."""
    names: dict[str, set[str]] = {}
    for name, (kind, labels) in documented_series().items():
        if kind == "histogram":
            names[name + "_bucket"] = {*labels, "le"}
            names[name + "_sum"] = names[name + "_count"] = set(labels)
        else:
            names[name] = set(labels)
    return names


def test_the_dashboard_is_importable_with_a_prometheus_datasource_variable():
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_every_query_reads_documented_and_registered_series_with_their_labels():
    known = _series_labels()
    registered = {
        family.name for family in REGISTRY.collect() if family.name.startswith("inferia_")
    } | set(metrics.SCRAPE_TIME_SERIES)
    documented_families = {name.removesuffix("_total") for name in documented_series()}
    assert documented_families == registered
    used = set()
    for title, expr in _queries(_dashboard()):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), title
        selectors = SELECTOR.findall(expr)
        assert selectors, (title, expr)
        labels_here: set[str] = set()
        for name, matchers in selectors:
            assert name in known, (title, name)
            used.add(name)
            labels_here |= known[name]
            for label in MATCHER_LABEL.findall(matchers):
                assert label in known[name], (title, name, label)
        for grouping in GROUPING.findall(expr):
            for label in (x.strip() for x in grouping.split(",") if x.strip()):
                assert label in labels_here, (title, label)
    # The dashboard covers each topic of the issue.
    for needed in (
        "inferia_gateway_requests_total",
        "inferia_gateway_errors_total",
        "inferia_gateway_overhead_seconds_bucket",
        "inferia_gateway_upstream_duration_seconds_bucket",
        "inferia_gateway_prompt_tokens_total",
        "inferia_gateway_completion_tokens_total",
        "inferia_gateway_cost_total",
        "inferia_gateway_denials_total",
        "inferia_gateway_limit_refusals_total",
        "inferia_gateway_degraded_decisions_total",
        "inferia_usage_stream_lag_seconds",
        "inferia_usage_dead_letters_total",
        "inferia_celery_tasks_total",
    ):
        assert needed in used, needed


def test_the_org_variable_reads_the_org_label():
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["org"]["definition"] == "label_values(inferia_gateway_requests_total, org)"
