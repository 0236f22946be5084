"""The only writer of audit records."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest

from audit import chain
from audit.models import AuditRecord, Outcome
from audit.redaction import redact, redact_text
from inferia.request_meta import RequestMeta, client_ip_from

__all__ = ["RequestMeta", "client_ip", "client_ip_from", "record"]

if TYPE_CHECKING:
    from orgs.models import Organization, User


def client_ip(request: HttpRequest | RequestMeta | None) -> str | None:
    """The client address; X-Forwarded-For is honoured only from trusted proxies."""
    meta = RequestMeta.from_http(request)
    return meta.ip if meta is not None else None


_recorded: ContextVar[int] = ContextVar("inferia_audit_recorded", default=0)


def _mark_recorded() -> None:
    _recorded.set(_recorded.get() + 1)


def recorded_count() -> int:
    """Records written in this context (the request audit skips requests already recorded)."""
    return _recorded.get()


def reset_recorded():
    return _recorded.set(0)


def record(
    *,
    action: str,
    outcome: str,
    org: Organization | None = None,
    actor: User | None = None,
    actor_label: str = "",
    target: Any = None,
    target_type: str = "",
    target_id: str = "",
    status_code: int | None = None,
    meta: RequestMeta | None = None,
    data: dict[str, Any] | None = None,
    latency_ms: float | None = None,
) -> AuditRecord:
    """Append one audit record (inside the caller's transaction, if any).

    ``meta`` is the request's metadata (``RequestMeta.from_http(request)`` at the
    edge); services never hand an ``HttpRequest`` here.
    """
    if outcome not in Outcome.values:
        raise ValueError(f"unknown outcome {outcome}")
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
    if actor is not None and not actor_label:
        actor_label = actor.username
    (created,) = chain.append(
        [
            AuditRecord(
                org=org,
                actor_user=actor if actor is not None and actor.pk else None,
                actor_label=redact_text(actor_label)[:200],
                action=action,
                outcome=outcome,
                status_code=status_code,
                target_type=target_type,
                target_id=target_id,
                client_ip=meta.ip if meta else None,
                user_agent=redact_text(meta.user_agent)[:300] if meta else "",
                request_id=meta.request_id if meta else "",
                data=redact(data or {}),
                latency_ms=latency_ms,
            )
        ]
    )
    _mark_recorded()
    return created
