"""Real gateway calls against the fake upstream, then a scrape of ``/metrics`` read with
Prometheus's text parser: each series moves by exactly what the calls did, with the
documented labels (docs/metrics.md), and nothing a caller sends becomes a label."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from audit import usage_ingest
from gateway import principals
from inferia.celery import app
from tests.conftest import to_step_start
from tests.gateway.conftest import assert_gateway_error, flush_usage

CHAT = [{"role": "user", "content": "Say hello to the metrics"}]
GPT4O = "openai-main/gpt-4o"
ACME_CHAT = {"org": "acme", "endpoint": "chat", "model": GPT4O, "provider_account": "openai-main"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def documented_series() -> dict[str, tuple[str, tuple[str, ...]]]:
    """docs/metrics.md's table: series name -> (type, label names)."""
    found = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"^\| `(inferia_[a-z_]+)` \| ([a-z]+)[^|]*\|([^|]*)\|", line)
        if match:
            labels = tuple(x.strip() for x in match.group(3).split(",") if x.strip())
            found[match.group(1)] = (match.group(2), labels)
    return found


@app.task(name="tests.observability.explode")
def explode() -> None:
    raise RuntimeError("this task fails on purpose")


@app.task(name="tests.observability.flaky", bind=True, max_retries=2)
def flaky(self, attempts: list) -> str:
    attempts.append(1)
    if len(attempts) == 1:
        raise self.retry(countdown=0)
    return "done"


def test_a_call_moves_each_series_by_exactly_what_it_did(llm, scrape):
    client = llm.sdk(llm.key())
    before = scrape.page()
    reply = client.chat.completions.create(model=GPT4O, messages=CHAT)
    after = scrape.page()

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("inferia_gateway_requests_total", **ACME_CHAT, status_class="2xx") == 1
    assert delta("inferia_gateway_requests_total") == 1  # and nothing else counted
    assert delta("inferia_gateway_request_duration_seconds_count", **ACME_CHAT) == 1
    assert delta("inferia_gateway_overhead_seconds_count", org="acme", endpoint="chat") == 1
    assert delta("inferia_gateway_upstream_duration_seconds_count", org="acme", model=GPT4O) == 1
    usage = reply.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert delta("inferia_gateway_prompt_tokens_total", org="acme", model=GPT4O) == (
        usage.prompt_tokens
    )
    assert delta("inferia_gateway_completion_tokens_total", org="acme", model=GPT4O) == (
        usage.completion_tokens
    )
    # gpt-4o's prices in the fixture: 2.5 per million prompt, 10 per million completion.
    # As the usage record charges it: whole micro-units.
    expected_cost = int(usage.prompt_tokens * 2.5 + usage.completion_tokens * 10.0) / 1e6
    cost = delta("inferia_gateway_cost_total", org="acme", model=GPT4O)
    assert cost == pytest.approx(expected_cost, rel=1e-9)
    assert delta("inferia_gateway_errors_total") == 0
    assert delta("inferia_gateway_denials_total") == 0
    # The overhead is the gateway's own share: never more than the whole request.
    overhead = delta("inferia_gateway_overhead_seconds_sum", org="acme", endpoint="chat")
    total = delta("inferia_gateway_request_duration_seconds_sum", **ACME_CHAT)
    assert 0 < overhead <= total


def test_errors_and_denials_by_code(llm, scrape):
    key = llm.key()
    no_run = llm.key(permissions=["model:read"])
    before = scrape.page()
    bad = llm.post("/chat/completions", "ifr_x", {"model": GPT4O, "messages": CHAT})
    assert_gateway_error(bad, 401, "AUTHENTICATION_FAILED")
    refused = llm.post("/chat/completions", no_run, {"model": GPT4O, "messages": CHAT})
    assert_gateway_error(refused, 403, "PERMISSION_DENIED")
    failing = llm.post(
        "/chat/completions", key, {"model": "openai-main/fake-error-500", "messages": CHAT}
    )
    assert_gateway_error(failing, 502, "UPSTREAM_ERROR")
    after = scrape.page()

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    # Unidentified: no org, no model.
    assert (
        delta(
            "inferia_gateway_denials_total",
            org="",
            endpoint="chat",
            status="401",
            reason="AUTHENTICATION_FAILED",
        )
        == 1
    )
    assert delta("inferia_gateway_requests_total", org="", model="", status_class="4xx") == 1
    assert (
        delta(
            "inferia_gateway_denials_total",
            org="acme",
            endpoint="chat",
            status="403",
            reason="PERMISSION_DENIED",
        )
        == 1
    )
    assert delta("inferia_gateway_denials_total") == 2
    assert (
        delta(
            "inferia_gateway_errors_total",
            org="acme",
            endpoint="chat",
            model="openai-main/fake-error-500",
            provider_account="openai-main",
            code="UPSTREAM_ERROR",
        )
        == 1
    )
    assert delta("inferia_gateway_errors_total", code="PERMISSION_DENIED", org="acme") == 1
    assert delta("inferia_gateway_errors_total", code="AUTHENTICATION_FAILED", org="") == 1
    assert (
        delta(
            "inferia_gateway_requests_total",
            org="acme",
            model="openai-main/fake-error-500",
            status_class="5xx",
        )
        == 1
    )
    # The upstream was waited for on the failed call too.
    assert (
        delta(
            "inferia_gateway_upstream_duration_seconds_count",
            model="openai-main/fake-error-500",
        )
        == 1
    )


def test_a_made_up_model_name_never_becomes_a_label(llm, scrape):
    key = llm.key()
    first = f"openai-main/made-up-{uuid.uuid4().hex}"
    assert_gateway_error(
        llm.post("/chat/completions", key, {"model": first, "messages": CHAT}), 404, "NOT_FOUND"
    )
    # An org model bob is not granted: refused, and not named either.
    llm.add_account("other-acct", "openai", f"{llm.upstream.url}/v1", [{"name": "secret-model"}])
    principals.clear()
    assert_gateway_error(
        llm.post("/chat/completions", key, {"model": "other-acct/secret-model", "messages": CHAT}),
        403,
        "PERMISSION_DENIED",
    )
    before = scrape.page()
    names = [f"acct-{uuid.uuid4().hex}/model-{uuid.uuid4().hex}" for _ in range(25)]
    for name in names:
        answer = llm.post("/chat/completions", key, {"model": name, "messages": CHAT})
        assert_gateway_error(answer, 404, "NOT_FOUND")
    # The Azure route takes the model from the path: the same rule.
    azure = httpx.post(
        f"{llm.base_url.removesuffix('/v1')}/openai/deployments/{names[0].replace('/', '%2F')}"
        "/chat/completions",
        json={"messages": CHAT},
        headers={"api-key": key},
        timeout=30,
    )
    assert azure.status_code == 404
    after = scrape.page()
    labels = after.label_values()
    assert not [n for n in [first, "other-acct/secret-model", *names] if n in labels]
    assert not [v for v in labels if "made-up" in v or v.startswith("acct-")]
    # 26 more refusals, not one series more: they all count under model="".
    assert len(after.samples) == len(before.samples)
    assert (
        after.value("inferia_gateway_requests_total", org="acme", model="", status_class="4xx")
        - before.value("inferia_gateway_requests_total", org="acme", model="", status_class="4xx")
        == 26
    )


def _key_limited_to_one_request(llm) -> str:
    key = llm.key()
    row = llm.key_row(key)
    row.requests_per_minute = 1
    row.save(update_fields=["requests_per_minute"])
    principals.clear()
    to_step_start(60)  # both calls in one window
    return key


def test_limit_refusals_by_scope_and_kind(llm, scrape, clock_shift):
    client = llm.sdk(_key_limited_to_one_request(llm))
    before = scrape.page()
    client.chat.completions.create(model=GPT4O, messages=CHAT)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=GPT4O, messages=CHAT)
    after = scrape.page()
    name = "inferia_gateway_limit_refusals_total"
    assert (
        after.value(name, org="acme", scope="key", kind="requests")
        - before.value(name, org="acme", scope="key", kind="requests")
        == 1
    )
    assert after.value(name) - before.value(name) == 1
    assert (
        after.value("inferia_gateway_errors_total", org="acme", code="RATE_LIMITED")
        - before.value("inferia_gateway_errors_total", org="acme", code="RATE_LIMITED")
        == 1
    )


def test_degraded_decisions_allowed_and_denied(on_redis, llm, redis_outage, scrape, settings):
    """Rate limits say allow; a second key under a monthly quota that says deny."""
    llm.org_settings(rate_limit_on_backend_error="allow")
    allowed = llm.sdk(llm.key())
    denied_key = llm.key()
    row = llm.key_row(denied_key)
    row.monthly_token_quota = 1_000_000
    row.save(update_fields=["monthly_token_quota"])
    principals.clear()
    denied = llm.sdk(denied_key)
    for client in (allowed, denied):
        client.chat.completions.create(model=GPT4O, messages=CHAT)  # warm principals
    before = scrape.page()
    redis_url = settings.REDIS_URL
    redis_outage()
    allowed.chat.completions.create(model=GPT4O, messages=CHAT)
    with pytest.raises(openai.APIStatusError) as caught:
        denied.chat.completions.create(model=GPT4O, messages=CHAT)
    assert caught.value.status_code == 503
    settings.REDIS_URL = redis_url
    after = scrape.page()
    name = "inferia_gateway_degraded_decisions_total"
    for decision in ("allowed", "denied"):
        assert (
            after.value(name, org="acme", decision=decision)
            - before.value(name, org="acme", decision=decision)
            == 1
        ), decision


def test_usage_stream_lag_and_dead_letters(on_redis, llm, scrape):
    key = llm.key()
    before = scrape.page()
    for _ in range(3):
        assert llm.post("/chat/completions", key, {"model": GPT4O, "messages": CHAT}).is_success
    waiting = scrape.page()
    assert waiting.value("inferia_usage_stream_length") == 3
    assert waiting.value("inferia_usage_stream_lag_seconds") >= 0
    flush_usage()
    usage_ingest.record_usage([("", b"{not json")])
    after = scrape.page()
    assert after.value("inferia_usage_stream_length") == 0
    assert after.value("inferia_usage_stream_lag_seconds") == 0
    assert after.value("inferia_usage_stream_pending") == 0
    assert (
        after.value("inferia_usage_records_total") - before.value("inferia_usage_records_total")
        == 3
    )
    assert (
        after.value("inferia_usage_dead_letters_total")
        - before.value("inferia_usage_dead_letters_total")
        == 1
    )
    assert (
        after.value("inferia_usage_dead_letters_stored")
        == before.value("inferia_usage_dead_letters_stored") + 1
    )


def test_celery_task_outcomes(db, scrape):
    before = scrape.page()
    explode_name, flaky_name = "tests.observability.explode", "tests.observability.flaky"
    # As a worker runs them: the test settings' eager mode re-raises at once, before
    # Celery's failure and retry handling (and their signals) run.
    assert explode.apply(throw=False).failed()
    assert flaky.apply(args=([],), throw=False).get() == "done"
    after = scrape.page()

    def delta(**labels: str) -> float:
        name = "inferia_celery_tasks_total"
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta(task=explode_name, outcome="failure") == 1
    assert delta(task=flaky_name, outcome="retry") == 1
    assert delta(task=flaky_name, outcome="success") == 1
    assert delta(task=explode_name, outcome="success") == 0
    seconds = "inferia_celery_task_duration_seconds_count"
    assert after.value(seconds, task=explode_name) - before.value(seconds, task=explode_name) == 1


def test_every_documented_series_is_exposed_with_its_labels(
    on_redis, llm, redis_outage, scrape, settings, clock_shift
):
    """After a tour of everything that records (a call, a refusal by each kind, a
    limit, an outage, a dead letter, a task), the operator's scrape holds every series
    of docs/metrics.md, with exactly its documented labels."""
    llm.org_settings(rate_limit_on_backend_error="allow")
    client = llm.sdk(_key_limited_to_one_request(llm))
    client.chat.completions.create(model=GPT4O, messages=CHAT)
    llm.post("/chat/completions", "ifr_x", {"model": GPT4O, "messages": CHAT})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=GPT4O, messages=CHAT)
    usage_ingest.record_usage([("", b"{not json")])
    assert explode.apply(throw=False).failed()
    redis_url = settings.REDIS_URL
    redis_outage()
    client.chat.completions.create(model=GPT4O, messages=CHAT)  # degraded: allowed
    settings.REDIS_URL = redis_url
    page = scrape.page()
    documented = documented_series()
    assert len(documented) >= 19
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for name, (kind, labels) in documented.items():
        if kind == "gauge":
            assert page.families.get(name) == "gauge", name
            assert page.series(name) == [{}], name
            continue
        assert kind in suffixes, (name, kind)
        family = name.removesuffix("_total")
        assert page.families.get(family) == kind, (name, page.families.get(family))
        for suffix in suffixes[kind]:
            sample = name if kind == "counter" else family + suffix
            found = page.series(sample)
            assert found, sample
            for sample_labels in found:
                assert set(sample_labels) - {"le"} == set(labels), (sample, sample_labels)
    # And nothing undocumented under Inferia's name.
    exposed = {f for f in page.families if f.startswith("inferia_")}
    assert exposed == {name.removesuffix("_total") for name in documented}
