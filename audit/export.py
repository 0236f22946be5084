"""CSV and JSON-lines streams of audit records (the API's ?format= and the audit log page).

A gateway call's latency, provider account and tokens are read from its usage record
(``selectors.usage_numbers``, one query per chunk of records)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator

from audit.selectors import usage_numbers

CHUNK = 2000

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


def _values(queryset) -> Iterator[dict]:
    """Each record's ``CSV_COLUMNS``, the metering ones through the link, a chunk at a time."""
    columns = [*CSV_COLUMNS, "org_id"]
    chunk: list[dict] = []
    for values in queryset.values(*columns).iterator(chunk_size=CHUNK):
        chunk.append(values)
        if len(chunk) == CHUNK:
            yield from _shaped(chunk)
            chunk = []
    yield from _shaped(chunk)


def _shaped(chunk: list[dict]) -> Iterator[dict]:
    for values, numbers in zip(chunk, usage_numbers(chunk), strict=True):
        yield {name: numbers[name] if name in numbers else values[name] for name in CSV_COLUMNS}


def csv_rows(queryset):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    # Every cell of every row goes through csv_cell: actor labels, targets, models and
    # request ids come from clients and tenants.
    for values in _values(queryset):
        row = list(values.values())
        row[-1] = json.dumps(row[-1], separators=(",", ":"))
        yield writer.writerow([csv_cell(value) for value in row])


def jsonl_rows(queryset):
    for values in _values(queryset):
        yield json.dumps(values, default=str, separators=(",", ":")) + "\n"
