"""Dashboard pages of knowledge bases: the list with the create form; one collection with
its documents (upload with a progress bar, delete) and a test query.

Everyone with ``knowledge_base:view`` opens the list (showing what ``knowledge.policy``
lets them see); uploading, deleting and searching are checked by the services, which
ask ``knowledge.policy`` (the page answers 403 first for a missing permission).
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from inferia.errors import InferiaError, NotFound
from inferia.request_meta import RequestMeta
from inferia.request_types import OrgPageRequest
from keys import access_rules
from knowledge import documents, forms, policy, retrieval, selectors, services
from knowledge.models import Document, KnowledgeBase
from orgs.models import Organization
from orgs.pages import confirmation_page, error_page, org_page, page_context, post_refused

OP_PERMISSIONS = {
    "upload": policy.ADD_DATA,
    "delete-document": policy.ADD_DATA,
    "query": policy.VIEW,
    "delete": policy.DELETE,
}


def _form_error(form, exc: InferiaError) -> None:
    details = exc.details if isinstance(exc.details, dict) else {}
    for key, problems in details.items():
        for problem in problems if isinstance(problems, list) else [problems]:
            form.add_error(key if key in form.fields else None, str(problem))
    form.add_error(None, exc.message)


@org_page("knowledge_base:view")
def kb_list(request: OrgPageRequest, org: Organization) -> HttpResponse:
    if refused := post_refused(request, policy.CREATE):
        return refused
    can_create = request.access.can(policy.CREATE)
    models = access_rules.allowed_for_access(request.access) if can_create else []
    form = forms.KnowledgeBaseForm(
        request.POST if request.method == "POST" else None, models=models
    )
    if request.method == "POST" and form.is_valid():
        try:
            kb = services.kb_create(
                access=request.access, meta=RequestMeta.from_http(request), **form.cleaned_data
            )
        except InferiaError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Knowledge base {kb.name} created.")
            return redirect("knowledge:kb-detail", org=org.slug, name=kb.name)
    return render(
        request,
        "knowledge/kb_list.html",
        page_context(
            request,
            knowledge_bases=list(selectors.kb_list(request.access)),
            form=form if can_create else None,
        ),
        status=400 if form.errors else 200,
    )


def _progress(document: Document) -> dict:
    return {
        "id": str(document.pk),
        "name": document.name,
        "version": document.version,
        "status": document.status,
        "status_reason": document.status_reason,
        "chunks_done": document.chunks_done,
        "chunks_total": document.chunks_total,
    }


def _upload(request: OrgPageRequest, kb: KnowledgeBase, form: forms.UploadForm):
    upload = form.cleaned_data["file"]
    return documents.document_upload(
        access=request.access,
        kb=kb,
        name=form.cleaned_data["name"] or upload.name,
        data=upload.read(),
        content_type=upload.content_type or "",
        metadata=form.cleaned_data["metadata"],
        meta=RequestMeta.from_http(request),
    )


@org_page("knowledge_base:view")
def kb_detail(request: OrgPageRequest, org: Organization, name: str) -> HttpResponse:
    try:
        kb = selectors.kb_get(request.access, name)
    except NotFound:
        return error_page(request, 404)
    detail_url = reverse("knowledge:kb-detail", kwargs={"org": org.slug, "name": name})
    op = request.POST.get("op", "") if request.method == "POST" else ""
    if request.method == "POST":
        if op not in OP_PERMISSIONS:
            return error_page(request, 400, "Unknown action.")
        if refused := post_refused(request, OP_PERMISSIONS[op]):
            return refused
    wants_json = "application/json" in request.headers.get("Accept", "")
    upload_form = forms.UploadForm(
        request.POST if op == "upload" else None, request.FILES if op == "upload" else None
    )
    query_form = forms.QueryForm(request.POST if op == "query" else None)
    results = None
    status = 200
    if op == "upload":
        if upload_form.is_valid():
            try:
                document = _upload(request, kb, upload_form)
            except InferiaError as exc:
                if wants_json:
                    return JsonResponse(
                        {"error": exc.message, "details": exc.details}, status=exc.status
                    )
                _form_error(upload_form, exc)
            else:
                if wants_json:
                    return JsonResponse(
                        {
                            **_progress(document),
                            "progress_url": reverse(
                                "knowledge:document-progress",
                                kwargs={"org": org.slug, "name": name, "document": document.pk},
                            ),
                        },
                        status=202,
                    )
                messages.success(request, f"{document.name} uploaded: ingestion {document.status}.")
                return redirect(detail_url)
        elif wants_json:
            return JsonResponse(
                {"error": "Invalid upload", "details": upload_form.errors}, status=400
            )
        status = 400
    elif op == "query":
        if query_form.is_valid():
            try:
                results = retrieval.kb_query(
                    access=request.access,
                    kb=kb,
                    query=query_form.cleaned_data["query"],
                    top_k=query_form.cleaned_data["top_k"],
                    meta=RequestMeta.from_http(request),
                )
            except InferiaError as exc:
                _form_error(query_form, exc)
                status = exc.status if exc.status < 500 else 502
        else:
            status = 400
    elif op == "delete-document":
        try:
            document_id = uuid.UUID(request.POST.get("document", ""))
        except ValueError:
            return error_page(request, 404)
        document = Document.objects.filter(knowledge_base=kb, pk=document_id).first()
        if document is None:
            return error_page(request, 404)
        if ask := confirmation_page(
            request,
            title=f"Delete {document.name}?",
            consequence="Its passages and vectors are removed; searches stop finding them.",
            button="Yes, delete it",
            cancel_url=detail_url,
        ):
            return ask
        try:
            documents.document_delete(
                access=request.access, document=document, meta=RequestMeta.from_http(request)
            )
        except InferiaError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{document.name} deleted.")
        return redirect(detail_url)
    elif op == "delete":
        if ask := confirmation_page(
            request,
            title=f"Delete knowledge base {kb.name}?",
            consequence="Every document, passage and vector in it is deleted. This cannot be undone.",
            button="Yes, delete it",
            cancel_url=detail_url,
        ):
            return ask
        try:
            services.kb_delete(access=request.access, kb=kb, meta=RequestMeta.from_http(request))
        except InferiaError as exc:
            messages.error(request, exc.message)
            return redirect(detail_url)
        messages.success(request, f"Knowledge base {kb.name} deleted.")
        return redirect("knowledge:kb-list", org=org.slug)
    granted = policy.may_search(request.access, kb)
    can_upload = policy.may_add_data(request.access, kb)
    return render(
        request,
        "knowledge/kb_detail.html",
        page_context(
            request,
            kb=kb,
            documents=list(selectors.document_list(kb)[:200]),
            upload_form=upload_form if can_upload else None,
            query_form=query_form if granted else None,
            results=results,
            can_delete=request.access.can(policy.DELETE),
        ),
        status=status,
    )


@org_page("knowledge_base:view")
def document_progress(
    request: OrgPageRequest, org: Organization, name: str, document
) -> HttpResponse:
    """A document's ingestion state, polled by the upload's progress bar."""
    try:
        kb = selectors.kb_get(request.access, name)
    except NotFound:
        return JsonResponse({"error": "Not found"}, status=404)
    found = Document.objects.filter(knowledge_base=kb, pk=document).first()
    if found is None:
        return JsonResponse({"error": "Not found"}, status=404)
    return JsonResponse(_progress(found))
