"""The fault suite's view of the stack's database, run as a process with the stack's
environment (so it reads the same database and Redis as the web process and the
worker, whichever PostgreSQL server that is).

    python tests/faults/stackctl.py setup < spec.json     # orgs, accounts, keys: JSON
    python tests/faults/stackctl.py count --log answers.jsonl --wait 120
    python tests/faults/stackctl.py poison < entries.json  # raw entries into the stream

``setup`` makes the fixtures through the product's own services (as
``bench/setup_bench.py`` does). ``count`` matches the load generator's log of
answers against the records, by request id: for every 2xx answer, how many usage
records and how many audit records exist (missing and duplicates counted
separately), waiting up to ``--wait`` seconds for ingest to drain the stream
first. ``poison`` appends raw entries to the usage stream the way the gateway
names and reaches it. It never decides pass or fail: the test does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inferia.settings")
os.environ.setdefault("INFERIA_PRINT_CONFIG", "0")

import django  # noqa: E402

django.setup()

from django.db.models import Count  # noqa: E402

from audit.models import Alert, AuditRecord, UsageDeadLetter, UsageRecord  # noqa: E402
from inferia import store  # noqa: E402
from inferia.store import keys, redis_store  # noqa: E402
from keys import access_rules, services  # noqa: E402
from keys.models import ApiKey  # noqa: E402
from orgs.access import access_for_user  # noqa: E402
from orgs.models import Organization, User  # noqa: E402
from orgs.scoping import org_scope  # noqa: E402
from orgs.services import auth, tenancy  # noqa: E402

HIGH = 2_000_000_000
UPSTREAM_SECRET = "sk-faults-fake-upstream-secret"  # noqa: S105 - the fake upstream's


def setup(spec: dict) -> dict:
    """One owner; per org: settings, one OpenAI account on the fake upstream with the
    listed models, a rule granting it to the owner, and a key without per-key limits."""
    upstream = spec["upstream"]
    host = upstream.split("://", 1)[1].rstrip("/")
    user = User(username=spec.get("owner", "faults"), email="faults@example.com")
    user.set_unusable_password()
    user.save()
    result: dict = {"orgs": {}}
    for org_spec in spec["orgs"]:
        org = tenancy.organization_create(user=user, slug=org_spec["slug"], name=org_spec["slug"])
        org.settings = {"allowed_private_hosts": [host], **org_spec.get("settings", {})}
        org.save(update_fields=["settings"])
        access = access_for_user(org, user)
        with org_scope(org):
            services.provider_account_create(
                access=access,
                name="fake",
                provider_type="openai",
                base_url=f"{upstream}/v1",
                models=[{"name": name} for name in org_spec["models"]],
                secret=UPSTREAM_SECRET,
            )
            access_rules.access_rules_replace(
                access=access,
                document={"authz_rules": [{"models": ["fake/*"], "users": [user.username]}]},
            )
            key, plaintext = services.api_key_create(
                access=access,
                name="faults",
                permissions=["inference:run", "inference:stream", "model:read"],
            )
            ApiKey.objects.filter(pk=key.pk).update(
                requests_per_minute=HIGH, tokens_per_minute=HIGH
            )
        result["orgs"][org.slug] = {"id": str(org.pk), "key": plaintext}
    result["jwt"] = auth.token_pair_issue(user=user).access_token
    return result


def _counts(model, rids: list[str], **filters) -> Counter:
    found: Counter = Counter()
    for start in range(0, len(rids), 5000):
        rows = (
            model.objects.filter(request_id__in=rids[start : start + 5000], **filters)
            .values("request_id")
            .annotate(n=Count("pk"))
        )
        found.update({row["request_id"]: row["n"] for row in rows})
    return found


def _stream_state() -> dict:
    if not store.redis_enabled():
        return {"length": 0, "pending": 0}
    length = int(redis_command("XLEN", keys.USAGE_STREAM))
    try:
        pending = int(redis_command("XPENDING", keys.USAGE_STREAM, keys.USAGE_GROUP)[0])
    except store.StoreUnavailable:  # no group yet (NOGROUP): nothing pending
        pending = 0
    return {"length": length, "pending": pending}


def redis_command(*command):
    """One command through the product's own client (routed by key on a cluster)."""
    return redis_store.call(lambda client: client.execute(*command))


def count(log: Path, wait: float) -> dict:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    answered = sorted({line["rid"] for line in lines if 200 <= line["status"] < 300})
    deadline = time.monotonic() + wait
    drained_before = False
    while True:
        stream = _stream_state()
        usage_n = _counts(UsageRecord, answered)
        audit_n = _counts(AuditRecord, answered, action__startswith="inference:")
        missing = [rid for rid in answered if not usage_n[rid] or not audit_n[rid]]
        # Drained: nothing waits in the stream, nothing read and unacknowledged. Seen
        # twice in a row (a batch between two looks), nothing more can arrive.
        drained = stream["length"] == 0 and stream["pending"] == 0
        if (drained and (not missing or drained_before)) or time.monotonic() > deadline:
            break
        drained_before = drained
        time.sleep(2.0)
    tokens: dict[str, int] = {}
    degraded_tokens: dict[str, int] = {}
    for org in Organization.objects.all():
        rows = UsageRecord.objects.filter(org_id=org.pk).values_list(
            "prompt_tokens", "completion_tokens", "request_id"
        )
        tokens[org.slug] = sum(p + c for p, c, _rid in rows)
        degraded = {
            rid
            for rid, data in AuditRecord.objects.filter(
                org_id=org.pk, action__startswith="inference:"
            ).values_list("request_id", "data")
            if (data or {}).get("degraded") == "allowed"
        }
        degraded_tokens[org.slug] = sum(p + c for p, c, rid in rows if rid in degraded)
    dead_list = int(redis_command("LLEN", keys.DEAD_LETTERS)) if store.redis_enabled() else 0
    return {
        "answered_2xx": len(answered),
        "usage_missing": sorted(rid for rid in answered if not usage_n[rid]),
        "usage_duplicated": sorted(rid for rid in answered if usage_n[rid] > 1),
        "audit_missing": sorted(rid for rid in answered if not audit_n[rid]),
        "audit_duplicated": sorted(rid for rid in answered if audit_n[rid] > 1),
        "stream": stream,
        "tokens": tokens,
        "degraded_tokens": degraded_tokens,
        "dead_letters": UsageDeadLetter.objects.count(),
        "dead_letter_list": dead_list,
        "dead_letter_alerts": Alert.objects.filter(kind=Alert.Kind.USAGE_DEAD_LETTER).count(),
    }


def poison(entries: list[str]) -> dict:
    ids = [redis_command("XADD", keys.USAGE_STREAM, "*", "entry", entry) for entry in entries]
    return {"stream": keys.USAGE_STREAM, "ids": [i.decode() for i in ids]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup")
    sub.add_parser("poison")
    p_count = sub.add_parser("count")
    p_count.add_argument("--log", type=Path, required=True)
    p_count.add_argument("--wait", type=float, default=0.0)
    args = parser.parse_args()
    if args.command == "setup":
        result = setup(json.load(sys.stdin))
    elif args.command == "poison":
        result = poison(json.load(sys.stdin))
    else:
        result = count(args.log, args.wait)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
