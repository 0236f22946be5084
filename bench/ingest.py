"""How many usage entries a second one worker moves from the Redis stream into PostgreSQL.

    createdb -h 127.0.0.1 -U postgres bench_inferia
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_inferia REDIS_URL=redis://127.0.0.1:6379/8 \\
      .venv/bin/python bench/ingest.py --entries 20000

It (re)creates the org "bench" (``bench/setup_bench.py``: a user, a provider
account, an API key), drops the usage stream of that Redis database, appends
``--entries`` entries shaped and encoded exactly as the gateway writes them (one
``XADD`` each, in pipelines), then times ``gateway.tasks.usage_ingest`` (the
worker's task: it drains the stream in batches of 500 into usage and audit
records) in this one process, as one worker does. Reported: entries a second
(wall clock and this process's CPU), the Redis memory an entry holds while it
waits in the stream, and the rows and transactions PostgreSQL committed per
entry (from ``pg_stat_database``). Run it on a database and a Redis database of
its own: it deletes the bench org (and its records) and the usage stream at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("INFERIA_PRINT_CONFIG", "0")

if not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")):
    sys.exit("bench/ingest.py measures the PostgreSQL + Redis path: set DATABASE_URL and REDIS_URL")

import redis  # noqa: E402 - the bench fills the stream itself, in bulk
import setup_bench  # noqa: E402 - sets up Django (bench/setup_bench.py)
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from audit.models import AuditRecord, UsageRecord  # noqa: E402
from gateway import usage  # noqa: E402
from gateway.tasks import usage_ingest  # noqa: E402
from inferia.store.keys import USAGE_STREAM  # noqa: E402
from keys.models import ApiKey  # noqa: E402
from orgs.models import Organization, User  # noqa: E402

PIPELINE = 1000  # XADDs per round trip while filling


def _entries(count: int) -> list[dict]:
    """Entries as ``gateway.app.Call.entry`` builds them for a successful chat call."""
    org = Organization.objects.get(slug=setup_bench.SLUG)
    user = User.objects.get(username=setup_bench.SLUG)
    key = ApiKey.all_orgs.filter(org=org, name="bench").get()
    now = time.time()
    return [
        {
            "id": str(uuid.uuid4()),
            "created_at": now - (count - index) * 0.001,
            "org_id": str(org.pk),
            "request_id": uuid.uuid4().hex,
            "user_id": str(user.pk),
            "service_account_id": None,
            "actor_label": f"{user.username} ({key.prefix})",
            "key_prefix": key.prefix,
            "endpoint": "chat.completions",
            "model": f"{setup_bench.ACCOUNT}/{setup_bench.MODEL}",
            "provider_account": setup_bench.ACCOUNT,
            "status_code": 200,
            "error_code": "",
            "streamed": index % 4 == 0,
            "prompt_tokens": 12,
            "completion_tokens": 16,
            "cost": 0.0000114,
            "latency_ms": 1.4,
            "upstream_latency_ms": 0.3,
            "client_ip": "127.0.0.1",
        }
        for index in range(count)
    ]


def _pg_counters() -> dict[str, int]:
    with connection.cursor() as cursor:
        if connection.pg_version >= 150000:
            cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        commits, inserted, updated, deleted = cursor.fetchone()
    return {"commits": commits, "inserted": inserted, "updated": updated, "deleted": deleted}


def run(entries: int, keep: bool) -> dict:
    setup_bench.setup("http://127.0.0.1:9")  # no upstream is called: only the records
    r = redis.Redis.from_url(settings.REDIS_URL)
    r.delete(USAGE_STREAM)
    batch = _entries(entries)
    started = time.perf_counter()
    for first in range(0, entries, PIPELINE):
        pipe = r.pipeline(transaction=False)
        for entry in batch[first : first + PIPELINE]:
            pipe.xadd(USAGE_STREAM, {"entry": usage._encoded(entry)})
        pipe.execute()
    fill_seconds = time.perf_counter() - started
    stream_bytes = r.memory_usage(USAGE_STREAM, samples=0) or 0
    records_before = UsageRecord.objects.count(), AuditRecord.objects.count()
    pg_before = _pg_counters()

    cpu_started, wall_started = time.process_time(), time.perf_counter()
    moved = usage_ingest()
    wall = time.perf_counter() - wall_started
    cpu = time.process_time() - cpu_started

    pg_after = _pg_counters()
    usage_rows = UsageRecord.objects.count() - records_before[0]
    audit_rows = AuditRecord.objects.count() - records_before[1]
    if not moved == entries == usage_rows or r.xlen(USAGE_STREAM):
        raise RuntimeError(f"ingested {moved} of {entries} entries ({usage_rows} records)")
    pg = {name: pg_after[name] - pg_before[name] for name in pg_after}
    result = {
        "entries": entries,
        "fill_seconds": round(fill_seconds, 3),
        "ingest_seconds": round(wall, 3),
        "entries_per_second": round(entries / wall),
        "worker_cpu_ms_per_entry": round(cpu * 1000 / entries, 4),
        "entries_per_cpu_second": round(entries / cpu) if cpu else None,
        "stream_bytes_per_entry": round(stream_bytes / entries),
        "usage_records": usage_rows,
        "audit_records": audit_rows,
        "pg_rows_inserted_per_entry": round(pg["inserted"] / entries, 3),
        "pg_rows_updated_per_entry": round(pg["updated"] / entries, 3),
        "pg_commits": pg["commits"],
        "postgres": connection.pg_version,
    }
    if not keep:
        r.delete(USAGE_STREAM)
        setup_bench.reset()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1, help="repeat and report each run")
    parser.add_argument("--keep", action="store_true", help="keep the bench org and its records")
    args = parser.parse_args()
    for _ in range(args.runs):
        result = run(args.entries, args.keep)
        print(json.dumps(result))
        print(
            f"{result['entries']} entries in {result['ingest_seconds']} s: "
            f"{result['entries_per_second']} entries/s on one worker "
            f"({result['worker_cpu_ms_per_entry']} ms of its CPU an entry); "
            f"{result['stream_bytes_per_entry']} bytes of Redis an entry while queued; "
            f"{result['pg_rows_inserted_per_entry']} rows inserted and "
            f"{result['pg_commits']} commits in PostgreSQL",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
