"""Background jobs over API keys: expiry notices, expiry records, unused-key reports.

Each runs over every org, is idempotent (a notice is sent once, recorded on
the key) and safe to retry: the mail goes out inside the transaction that
marks it sent, so a failed send leaves the key unmarked for the next run.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q

from audit import services as audit
from inferia import clock
from keys.models import ApiKey
from orgs.models import Membership

logger = logging.getLogger(__name__)
NOTICES = (("expiry_notice_7d_at", timedelta(days=7)), ("expiry_notice_1d_at", timedelta(days=1)))


def _recipients(key: ApiKey) -> list[str]:
    owner = key.owner_user
    if owner is not None:
        return [owner.email] if owner.email else []
    # Service-account keys: the org's owners and admins hear about them.
    return sorted(
        email
        for email in Membership.all_orgs.filter(
            org_id=key.org_id, role__slug__in=["owner", "admin"], role__org__isnull=True
        ).values_list("user__email", flat=True)
        if email
    )


def api_key_expiry_notices() -> int:
    """E-mail owners 7 days and 1 day before a key expires (once each)."""
    now = clock.now()
    sent = 0
    for field, ahead in NOTICES:
        due = ApiKey.all_orgs.filter(
            revoked_at__isnull=True,
            expires_at__gt=now,
            expires_at__lte=now + ahead,
            **{f"{field}__isnull": True},
        ).values_list("pk", flat=True)
        for pk in due:
            with transaction.atomic():
                key = (
                    ApiKey.all_orgs.select_for_update(of=("self",))
                    .select_related("owner_user", "org")
                    .get(pk=pk)
                )
                if getattr(key, field) is not None:
                    continue
                recipients = _recipients(key)
                if recipients:
                    send_mail(
                        subject=f"Inferia API key {key.prefix} expires on {key.expires_at:%Y-%m-%d}",
                        message=(
                            f"The API key '{key.name}' ({key.prefix}) in {key.org.name} expires on "
                            f"{key.expires_at:%Y-%m-%d %H:%M} UTC. Rotate it before then to keep your "
                            "integrations working."
                        ),
                        from_email=None,
                        recipient_list=recipients,
                    )
                setattr(key, field, now)
                key.save(update_fields=[field])
                sent += 1
    return sent


def api_key_expire_due() -> int:
    """Record each key's expiry once in the audit log (the key already fails by its date)."""
    now = clock.now()
    recorded = 0
    for pk in ApiKey.all_orgs.filter(
        expires_at__lte=now, expired_recorded_at__isnull=True, revoked_at__isnull=True
    ).values_list("pk", flat=True):
        with transaction.atomic():
            key = ApiKey.all_orgs.select_for_update().select_related("org").get(pk=pk)
            if key.expired_recorded_at is not None:
                continue
            key.expired_recorded_at = now
            key.save(update_fields=["expired_recorded_at"])
            audit.record(
                action="api_key:expire",
                outcome="success",
                org=key.org,
                actor_label="system",
                target=key,
                data={"prefix": key.prefix},
            )
            recorded += 1
    return recorded


def api_key_unused_report(*, default_days: int = 30) -> int:
    """Tell owners about active keys unused for N days (org setting ``unused_key_days``)."""
    now = clock.now()
    reported = 0
    candidates = (
        ApiKey.all_orgs.filter(revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("org", "owner_user")
    )
    for key in candidates.iterator():
        days = key.org.policy.unused_key_days
        cutoff = now - timedelta(days=days)
        last = key.last_used_at or key.created_at
        if last > cutoff or (key.unused_notice_at and key.unused_notice_at > cutoff):
            continue
        with transaction.atomic():
            recipients = _recipients(key)
            if recipients:
                send_mail(
                    subject=f"Inferia API key {key.prefix} has not been used for {days} days",
                    message=(
                        f"The API key '{key.name}' ({key.prefix}) in {key.org.name} has not been used since "
                        f"{last:%Y-%m-%d}. Revoke it if nobody needs it."
                    ),
                    from_email=None,
                    recipient_list=recipients,
                )
            ApiKey.all_orgs.filter(pk=key.pk).update(unused_notice_at=now)
            reported += 1
    return reported
