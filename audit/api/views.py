"""Audit log and usage endpoints: ``/orgs/{org}/audit-logs`` and ``/orgs/{org}/usage``."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from audit import latency, selectors
from audit.api import serializers as s
from audit.export import csv_rows, jsonl_rows
from inferia.api import OrgAPIView
from orgs.models import TeamMember, User


class _StreamRenderer(BaseRenderer):
    """Lets ``?format=csv|jsonl`` through content negotiation; the view streams the body."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data, default=str).encode()


class CsvRenderer(_StreamRenderer):
    media_type, format = "text/csv", "csv"


class JsonLinesRenderer(_StreamRenderer):
    media_type, format = "application/x-ndjson", "jsonl"


class AuditCursorPagination(CursorPagination):
    # Records of several chains are listed (the members' auth events): by time.
    ordering = ("-created_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class AuditLogListView(OrgAPIView):
    """Filters: actor, action (``auth:*`` for a prefix), outcome, target, model, since, until.
    ``?format=csv`` and ``?format=jsonl`` stream every matching record."""

    required_permissions = {"GET": "audit_log:view"}
    renderer_classes = [JSONRenderer, CsvRenderer, JsonLinesRenderer]
    pagination_class = AuditCursorPagination
    serializer_class = s.AuditRecordOutput

    def get_scoped_queryset(self):
        query = s.AuditQueryInput(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        self.query = query.validated_data
        filters = {
            k: v for k, v in self.query.items() if k not in ("format", "cursor", "page_size")
        }
        return selectors.audit_record_list(**filters)

    @extend_schema(
        parameters=[s.AuditQueryInput],
        responses={
            200: s.AuditRecordOutput(many=True),
            (200, "text/csv"): str,
            (200, "application/x-ndjson"): str,
        },
    )
    def get(self, request, org):
        queryset = self.get_queryset()
        fmt = self.query["format"]
        if fmt == "csv":
            response = StreamingHttpResponse(
                csv_rows(queryset), content_type="text/csv; charset=utf-8"
            )
            response["Content-Disposition"] = f'attachment; filename="audit-{org}.csv"'
            return response
        if fmt == "jsonl":
            return StreamingHttpResponse(jsonl_rows(queryset), content_type="application/x-ndjson")
        page = selectors.with_usage(self.paginate_queryset(queryset) or [])
        return self.get_paginated_response(s.AuditRecordOutput(page, many=True).data)


class UsageView(OrgAPIView):
    """Usage over time grouped by model, key, user, team or service account, from the rollups.

    Percentiles of a group spanning several rollup rows come from the rows' summed
    latency histograms (``audit.latency``), never from averaging their percentiles.
    """

    required_permissions = {"GET": "usage:view"}

    def get_scoped_queryset(self):
        query = s.UsageQueryInput(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        self.query = q = query.validated_data
        until = q.get("until") or timezone.now()
        since = q.get("since") or until - timedelta(days=7)
        rows = selectors.usage_rollup_list(period=q["period"], since=since, until=until)
        if q.get("model"):
            rows = rows.filter(model=q["model"])
        if q.get("key"):
            rows = rows.filter(key_prefix=q["key"])
        if q.get("user"):
            user = User.objects.filter(username=q["user"]).first()
            rows = rows.filter(user_id=user.pk if user else None) if user else rows.none()
        self.window = (since, until)
        return rows

    @extend_schema(parameters=[s.UsageQueryInput], responses={200: dict})
    def get(self, request, org):
        rows = list(self.get_queryset())
        group_by = self.query["group_by"]
        names = self._names(rows, group_by)
        buckets: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
        totals: dict[str, dict] = defaultdict(lambda: defaultdict(float))
        for row in rows:
            for group in self._groups(row, group_by, names):
                for target in (buckets[(row.period_start, group)], totals[group]):
                    for name in (
                        "requests",
                        "errors",
                        "denied",
                        "prompt_tokens",
                        "completion_tokens",
                        "cost",
                    ):
                        target[name] += getattr(row, name)
                    target.setdefault("_histograms", []).append(row.latency_histogram or [])

        def shape(values: dict) -> dict:
            requests = int(values["requests"])
            merged = latency.merge(values.get("_histograms", []))
            return {
                "requests": requests,
                "errors": int(values["errors"]),
                "denied": int(values["denied"]),
                "prompt_tokens": int(values["prompt_tokens"]),
                "completion_tokens": int(values["completion_tokens"]),
                "total_tokens": int(values["prompt_tokens"] + values["completion_tokens"]),
                "cost": round(values["cost"], 6),
                "latency_p50_ms": latency.percentile(merged, 0.50),
                "latency_p95_ms": latency.percentile(merged, 0.95),
            }

        series = [
            {"period_start": start, "group": group, **shape(values)}
            for (start, group), values in sorted(
                buckets.items(), key=lambda item: (item[0][0], item[0][1])
            )
        ]
        return Response(
            {
                "group_by": group_by,
                "period": self.query["period"],
                "since": self.window[0],
                "until": self.window[1],
                "totals": [
                    {"group": group, **shape(values)} for group, values in sorted(totals.items())
                ],
                "series": series,
            }
        )

    @staticmethod
    def _names(rows, group_by: str) -> dict:
        from keys.models import ServiceAccount

        if group_by == "user":
            ids = {row.user_id for row in rows if row.user_id}
            return {u.pk: u.username for u in User.objects.filter(pk__in=ids)}
        if group_by == "service_account":
            ids = {row.service_account_id for row in rows if row.service_account_id}
            return {a.pk: a.slug for a in ServiceAccount.objects.filter(pk__in=ids)}
        if group_by == "team":
            teams = defaultdict(list)
            for member in TeamMember.objects.select_related("team"):
                teams[member.user_id].append(member.team.slug)
            return teams
        return {}

    @staticmethod
    def _groups(row, group_by: str, names: dict) -> list[str]:
        if group_by == "model":
            return [row.model or "(none)"]
        if group_by == "key":
            return [row.key_prefix or "(no key)"]
        if group_by == "user":
            return [
                names.get(
                    row.user_id, "(service account)" if row.service_account_id else "(unknown)"
                )
            ]
        if group_by == "service_account":
            return [names.get(row.service_account_id, "(user)")]
        return names.get(row.user_id) or ["(no team)"]
