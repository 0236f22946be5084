"""The audit log page: filters, pagination and a CSV export of the same records."""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render

from audit import selectors
from audit.export import csv_rows
from orgs.pages import org_page, page_context

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
