"""Benchmark fixtures, made through the product's own Django code (not part of the product).

    python bench/setup_bench.py setup --upstream http://127.0.0.1:9000   # prints JSON
    python bench/setup_bench.py fill --keys 100000 --rules 10000          # grow the org
    python bench/setup_bench.py cache --enabled 1                         # its response cache
    python bench/setup_bench.py reset                                     # drop the bench org

``setup`` (re)creates the user ``bench`` and the org ``bench`` with provider
accounts ``bench-upstream`` (an OpenAI account pointing at the mock upstream) and
``bench-stream`` (the same upstream under ``/stream``, for streamed calls), one
access rule granting both to ``bench``, and an API key with limits high
enough that a saturation run is never throttled; then tops the org up to 10 API
keys and 10 access rules (the "small" end of the flatness measurement).
``fill`` bulk-inserts filler keys and rules (only the first key is ever used)
and bumps the org's epoch, so the gateway rebuilds its cached principal from
the grown tables on the next request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inferia.settings")
os.environ.setdefault("INFERIA_PRINT_CONFIG", "0")

import django  # noqa: E402

django.setup()

from django.db import connections, transaction  # noqa: E402

from bench.nginx_upstream import STREAM_PREFIX  # noqa: E402
from inferia import store  # noqa: E402
from keys import access_rules, apikeys, services  # noqa: E402
from keys.models import AccessRule, ApiKey  # noqa: E402
from orgs.access import access_for_user  # noqa: E402
from orgs.models import Organization, User  # noqa: E402
from orgs.scoping import org_scope  # noqa: E402
from orgs.services import cache as cache_settings  # noqa: E402
from orgs.services import tenancy  # noqa: E402

SLUG = "bench"
ACCOUNT = "bench-upstream"
# Streamed calls go to their own account under /stream (bench/nginx_upstream.py: a static
# nginx mock cannot tell a streamed request from a plain one by its body).
STREAM_ACCOUNT = "bench-stream"
MODEL = "gpt-4o-mini"
UPSTREAM_SECRET = "sk-bench-fake-upstream-secret"  # noqa: S105 - the fake upstream's, not a real one
HIGH = 2_000_000_000  # per-minute limits no run can reach
FILLER_PREFIX = "bnch"  # filler key public ids: bnch + 8 digits (12 characters)


def reset() -> None:
    org = Organization.objects.filter(slug=SLUG).first()
    if org is not None:
        # Filler keys and rules are many: delete them in bulk, then the org (cascades the rest).
        keys = ApiKey.all_orgs.filter(org=org)
        keys.update(replaced_by=None)
        keys._raw_delete(keys.db)
        AccessRule.all_orgs.filter(org=org).delete()
        org.delete()
    User.objects.filter(username=SLUG).delete()


def setup(upstream: str) -> dict:
    reset()
    host = upstream.split("://", 1)[1].rstrip("/")
    user = User(username=SLUG, email="bench@example.com")
    user.set_unusable_password()
    user.save()
    org = tenancy.organization_create(user=user, slug=SLUG, name="Benchmark")
    org.settings = {"allowed_private_hosts": [host]}
    org.save(update_fields=["settings"])
    access = access_for_user(org, user)
    with org_scope(org):
        for name, base in ((ACCOUNT, upstream), (STREAM_ACCOUNT, upstream + STREAM_PREFIX)):
            services.provider_account_create(
                access=access,
                name=name,
                provider_type="openai",
                base_url=f"{base}/v1",
                models=[
                    {
                        "name": MODEL,
                        "input_price_per_million": 0.15,
                        "output_price_per_million": 0.6,
                    }
                ],
                secret=UPSTREAM_SECRET,
            )
        access_rules.access_rules_replace(
            access=access,
            document={
                "authz_rules": [
                    {"models": [f"{ACCOUNT}/*", f"{STREAM_ACCOUNT}/*"], "users": [SLUG]}
                ]
            },
        )
        key, plaintext = services.api_key_create(
            access=access,
            name="bench",
            permissions=["inference:run", "inference:stream", "model:read"],
        )
        ApiKey.objects.filter(pk=key.pk).update(requests_per_minute=HIGH, tokens_per_minute=HIGH)
    counts = fill(keys=10, rules=10)
    return {
        "key": plaintext,
        "model": f"{ACCOUNT}/{MODEL}",
        "stream_model": f"{STREAM_ACCOUNT}/{MODEL}",
        "stream_prefix": STREAM_PREFIX,
        "upstream_model": MODEL,
        "upstream_secret": UPSTREAM_SECRET,
        **counts,
    }


DIRECT_DEPLOYMENT = "bench-direct"
FALLBACK_DEPLOYMENT = "bench-fallback"
DEAD_ACCOUNT = "bench-dead"


def deployments(dead: str, cooldown: int) -> dict:
    """Two deployments for bench/routing.py: ``bench-direct`` (one target, the mock
    upstream's model: routing's own cost) and ``bench-fallback`` (first a target whose
    connect never completes, ``dead`` host:port, then the mock upstream; its breaker
    opens on the first failure and half-opens after ``cooldown`` seconds). The bench
    user is granted ``deployment/*``."""
    from deployments import services as deployment_services

    org = Organization.objects.get(slug=SLUG)
    user = User.objects.get(username=SLUG)
    org.settings = {
        **org.settings,
        "allowed_private_hosts": [*org.settings.get("allowed_private_hosts", []), dead],
    }
    org.save(update_fields=["settings"])
    access = access_for_user(org, user)
    with org_scope(org):
        services.provider_account_create(
            access=access,
            name=DEAD_ACCOUNT,
            provider_type="openai",
            base_url=f"http://{dead}/v1",
            models=[{"name": MODEL}],
            secret=UPSTREAM_SECRET,
        )
        document = access_rules.export_rules()
        document[0]["models"] = [*document[0]["models"], f"{DEAD_ACCOUNT}/*", "deployment/*"]
        access_rules.access_rules_replace(access=access, document={"authz_rules": document})
        access = access_for_user(org, user)
        deployment_services.deployment_create(
            access=access,
            name=DIRECT_DEPLOYMENT,
            config={"targets": [{"name": "mock", "account": ACCOUNT, "model": MODEL}]},
        )
        deployment_services.deployment_create(
            access=access,
            name=FALLBACK_DEPLOYMENT,
            config={
                "strategy": "priority",
                "targets": [
                    {"name": "dead", "account": DEAD_ACCOUNT, "model": MODEL, "priority": 0},
                    {"name": "mock", "account": ACCOUNT, "model": MODEL, "priority": 1},
                ],
                "retries": 1,
                "breaker": {"failures": 1, "window_seconds": 60, "cooldown_seconds": cooldown},
                "health_check": {"enabled": False},
            },
        )
    store.bump_epoch(org.pk)
    return {
        "direct": f"deployment/{DIRECT_DEPLOYMENT}",
        "fallback": f"deployment/{FALLBACK_DEPLOYMENT}",
    }


def _insert_keys(org, user, numbers) -> None:
    """Filler keys in bulk: one template row prepared by the ORM's fields, then only the
    varying columns per row (bulk_create compiles SQL per row: ten times slower at 100,000)."""
    conn = connections[ApiKey.all_orgs.db]
    fields = ApiKey._meta.concrete_fields
    template = ApiKey(
        org=org,
        public_id="",
        secret_digest="",
        last_four="0000",
        name="",
        permissions=["inference:run"],
        owner_user=user,
        created_by=user,
    )
    base = [f.get_db_prep_save(f.pre_save(template, True), conn) for f in fields]
    position = {f.attname: i for i, f in enumerate(fields)}
    table = conn.ops.quote_name(ApiKey._meta.db_table)
    columns = ", ".join(conn.ops.quote_name(f.column) for f in fields)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608 - quoted names
    id_field = ApiKey._meta.pk
    rows = []
    for i in numbers:
        public_id = f"{FILLER_PREFIX}{i:08d}"
        row = list(base)
        row[position["id"]] = id_field.get_db_prep_save(uuid.uuid4(), conn)
        row[position["public_id"]] = public_id
        row[position["secret_digest"]] = apikeys.digest(public_id)
        row[position["name"]] = f"filler {i}"
        rows.append(row)
    if conn.vendor == "postgresql":
        import psycopg

        conn.ensure_connection()
        # Server-side binding: psycopg pipelines executemany (Django's client-side cursor does not).
        with psycopg.Cursor(conn.connection) as cursor:
            cursor.executemany(sql, rows)
    else:
        with conn.cursor() as cursor:
            cursor.executemany(sql, rows)


def fill(*, keys: int, rules: int) -> dict:
    """Top the bench org up to ``keys`` API keys and ``rules`` access rules (bulk inserts)."""
    org = Organization.objects.get(slug=SLUG)
    user = User.objects.get(username=SLUG)
    with org_scope(org), transaction.atomic():
        have_keys = ApiKey.objects.count()
        have_rules = AccessRule.objects.count()
        start = ApiKey.objects.filter(public_id__startswith=FILLER_PREFIX).count()
        _insert_keys(org, user, range(start, start + max(0, keys - have_keys)))
        # Filler rules grant other (absent) accounts to nobody: the principal build still reads them.
        AccessRule.objects.bulk_create(
            [
                AccessRule(
                    org=org,
                    position=have_rules + i,
                    description=f"filler {i}",
                    model_patterns=[f"filler-{i}/*"],
                )
                for i in range(max(0, rules - have_rules))
            ],
            batch_size=5000,
        )
        counts = {"keys": ApiKey.objects.count(), "rules": AccessRule.objects.count()}
    # Vacuum and fresh planner statistics now, rather than an autovacuum pass (PostgreSQL
    # starts one after a bulk insert) competing for the cores during the measurement.
    connection = connections[ApiKey.all_orgs.db]
    command = "VACUUM (ANALYZE)" if connection.vendor == "postgresql" else "ANALYZE"
    with connection.cursor() as cursor:
        for model in (ApiKey, AccessRule, AccessRule.users.through):
            cursor.execute(f"{command} {connection.ops.quote_name(model._meta.db_table)}")
    store.bump_epoch(org.pk)  # outside the transaction: now; cached principals are rebuilt
    return counts


def cache(*, enabled: bool) -> dict:
    """Turn the bench org's response cache on or off (as its Owner, through the service:
    the org's epoch moves, so the gateway sees it on the next request), with a cap no
    run fills."""
    org = Organization.objects.get(slug=SLUG)
    user = User.objects.get(username=SLUG)
    with org_scope(org):
        cache_settings.cache_settings_update(
            access=access_for_user(org, user),
            changes={"cache_enabled": enabled, "cache_max_bytes": 1024**3},
        )
    return {"cache_enabled": enabled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_setup = sub.add_parser("setup")
    p_setup.add_argument(
        "--upstream", required=True, help="fake upstream base, e.g. http://127.0.0.1:9000"
    )
    p_fill = sub.add_parser("fill")
    p_fill.add_argument("--keys", type=int, default=0)
    p_fill.add_argument("--rules", type=int, default=0)
    p_deployments = sub.add_parser("deployments")
    p_deployments.add_argument("--dead", required=True, help="host:port that never accepts")
    p_deployments.add_argument("--cooldown", type=int, default=5)
    p_cache = sub.add_parser("cache")
    p_cache.add_argument("--enabled", type=int, choices=(0, 1), required=True)
    sub.add_parser("reset")
    args = parser.parse_args()
    if args.command == "setup":
        result = setup(args.upstream)
    elif args.command == "deployments":
        result = deployments(args.dead, args.cooldown)
    elif args.command == "cache":
        result = cache(enabled=bool(args.enabled))
    elif args.command == "fill":
        result = fill(keys=args.keys, rules=args.rules)
    else:
        reset()
        result = {"reset": True}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
