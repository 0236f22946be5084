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


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A CSV cell a spreadsheet shows as text: a string that could start a formula
    gets a leading single quote (OWASP); numbers and empty values stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_rows(queryset):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    # Every cell of every row goes through csv_cell: actor labels, targets, models and
    # request ids come from clients and tenants.
    for values in queryset.values_list(*CSV_COLUMNS).iterator(chunk_size=2000):
        row = list(values)
        row[-1] = json.dumps(row[-1], separators=(",", ":"))
        yield writer.writerow([csv_cell(value) for value in row])


def jsonl_rows(queryset):
    for values in queryset.values(*CSV_COLUMNS).iterator(chunk_size=2000):
        yield json.dumps(values, default=str, separators=(",", ":")) + "\n"
