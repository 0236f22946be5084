"""Dashboard pages of audit/: the audit log (filters, pagination, CSV export), usage
charts over a chosen time range, and the request log with one request's detail."""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render

from audit import forms, selectors
from audit.charts import bar_chart
from audit.export import csv_rows
from audit.models import UsageRollup
from inferia.request_types import OrgPageRequest
from orgs.models import Organization
from orgs.pages import error_page, org_page, page_context

PAGE_SIZE = 50
FILTERS = ("actor", "action", "outcome", "model")


def _records(request: HttpRequest):
    filters = {name: request.GET.get(name, "").strip() for name in FILTERS}
    records = selectors.audit_record_list(
        actor=filters["actor"] or None,
        action=filters["action"] or None,
        outcome=filters["outcome"] or None,
        model=filters["model"] or None,
    )
    return filters, records


@org_page("audit_log:view")
def audit_record_list(request: HttpRequest, org) -> HttpResponse:
    filters, records = _records(request)
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = selectors.with_usage(page.object_list)
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(
        request,
        "audit/audit_record_list.html",
        page_context(request, page=page, filters=filters, query=query),
    )


@org_page("audit_log:view")
def audit_record_export(request: HttpRequest, org) -> HttpResponseBase:
    _filters, records = _records(request)
    response = StreamingHttpResponse(csv_rows(records), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{org.slug}.csv"'
    return response


# --- usage --------------------------------------------------------------------------------------


def _period_label(start, period: str) -> str:
    return start.strftime("%H:00") if period == UsageRollup.Period.HOUR else start.strftime("%d %b")


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


@org_page("usage:view")
def usage(request: OrgPageRequest, org: Organization) -> HttpResponse:
    """Requests, tokens, cost, errors and latency p50/p95 over a time range (24 h, 7 d,
    30 d or custom days), and the same per model, key, user or team, from the rollups."""
    form = forms.UsageForm(request.GET or None)
    if request.GET and not form.is_valid():
        return render(request, "audit/usage.html", page_context(request, form=form), status=400)
    if not request.GET:
        form = forms.UsageForm({"range": "7d", "group": "model"})
        form.is_valid()
    since, until, period = form.window()
    group_by = form.cleaned_data["group"]
    report = selectors.usage_report(period=period, since=since, until=until, group_by=group_by)
    periods = report["periods"]

    def series(name: str) -> list[tuple[str, float]]:
        return [(_period_label(p["start"], period), p[name]) for p in periods]

    per = "an hour" if period == UsageRollup.Period.HOUR else "a day"
    charts = [
        bar_chart(f"Requests {per}", series("requests")),
        bar_chart(f"Tokens {per}", series("tokens")),
        bar_chart(f"Cost {per}", series("cost"), fmt=lambda v: f"{v:,.4f}"),
        bar_chart(
            f"Errors and refusals {per}",
            [(_period_label(p["start"], period), p["errors"] + p["denied"]) for p in periods],
        ),
        bar_chart(f"Latency p50 {per}", series("latency_p50_ms"), fmt=_ms),
        bar_chart(f"Latency p95 {per}", series("latency_p95_ms"), fmt=_ms),
    ]
    group_label = dict(forms.GROUPS)[group_by]
    charts.append(
        bar_chart(
            f"Requests by {group_label.lower()}",
            [(g["group"], g["requests"]) for g in report["groups"][:12]],
        )
    )
    return render(
        request,
        "audit/usage.html",
        page_context(
            request,
            form=form,
            charts=charts,
            report=report,
            group_label=group_label,
            since=since,
            until=until,
            period=period,
        ),
    )


# --- request log ---------------------------------------------------------------------------------


@org_page("usage:view")
def request_list(request: OrgPageRequest, org: Organization) -> HttpResponse:
    """The org's gateway calls, filtered by key, model, status and time range, paginated."""
    data = request.GET.copy()
    data.setdefault("range", "7d")
    form = forms.RequestLogForm(data)
    if not form.is_valid():
        return render(
            request, "audit/request_list.html", page_context(request, form=form), status=400
        )
    since, until, _period = form.window()
    records = selectors.usage_record_list(
        key=form.cleaned_data["key"] or None,
        model=form.cleaned_data["model"] or None,
        status=form.cleaned_data["status"] or None,
        since=since,
        until=until,
    )
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    query = urlencode(
        {
            name: value
            for name, value in data.items()
            if name in ("range", "from", "to", "key", "model", "status") and value
        }
    )
    return render(
        request,
        "audit/request_list.html",
        page_context(request, form=form, page=page, query=query, since=since, until=until),
    )


@org_page("usage:view")
def request_detail(request: OrgPageRequest, org: Organization, record_id) -> HttpResponse:
    """One gateway call, its audit records (by request id) and, when the org keeps them
    and the viewer may read the audit log, its prompt and answer."""
    record = selectors.usage_record_get(record_id)
    if record is None:
        return error_page(request, 404)
    may_see_audit = request.access.can("audit_log:view")
    audit_records = (
        list(selectors.audit_records_for_request(record.request_id)) if may_see_audit else None
    )
    return render(
        request,
        "audit/request_detail.html",
        page_context(
            request,
            record=record,
            audit_records=audit_records,
            payload=selectors.payload_for(request.access, record),
            payload_logging=request.access.policy.payload_logging,
        ),
    )
