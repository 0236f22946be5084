"""CSV and JSON-lines streams of audit records (the API's ?format= and the audit log page)."""

from __future__ import annotations

import csv
import json

CSV_COLUMNS = [
    "created_at",
    "action",
    "outcome",
    "status_code",
    "actor_label",
    "actor_user_id",
    "client_ip",
    "target_type",
    "target_id",
    "model",
    "provider_account",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "request_id",
    "seq",
    "hash",
    "data",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_rows(queryset):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for values in queryset.values_list(*CSV_COLUMNS).iterator(chunk_size=2000):
        row = list(values)
        row[-1] = json.dumps(row[-1], separators=(",", ":"))
        yield writer.writerow(row)


def jsonl_rows(queryset):
    for values in queryset.values(*CSV_COLUMNS).iterator(chunk_size=2000):
        yield json.dumps(values, default=str, separators=(",", ":")) + "\n"
