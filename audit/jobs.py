"""Background jobs of audit/: retention and alerts (idempotent, over every org)."""

from __future__ import annotations

import ipaddress
import logging
from datetime import timedelta

from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from audit import services as audit
from audit.models import Alert, AuditChainHead, AuditRecord, Payload, UsageRecord
from orgs.models import Membership, Organization
from orgs.services.tenancy import AUDIT_RETENTION_FLOOR_DAYS

logger = logging.getLogger(__name__)


def retention_days(org: Organization) -> int:
    """The org's audit retention, never below the floor (whatever the settings say)."""
    return max(org.policy.audit_retention_days, AUDIT_RETENTION_FLOOR_DAYS)


def _prune(org: Organization, cutoff) -> tuple[int, int]:
    """Delete the org's audit and usage records older than ``cutoff`` and note the last
    pruned link on the chain head (``verify_audit_chain`` checks the first record).
    PostgreSQL: through the SECURITY DEFINER function, the only way past the trigger."""
    last = (
        AuditRecord.objects.filter(org_id=org.pk, created_at__lt=cutoff)
        .order_by("-seq")
        .values_list("seq", "hash")
        .first()
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM inferia_audit_prune(%s, %s)", [org.pk, cutoff])
            count, usage_count, _seq, _hash = cursor.fetchone()
    else:
        # Queryset deletes bypass the models' refusal: this job is the one exception.
        count, _ = AuditRecord.objects.filter(org_id=org.pk, created_at__lt=cutoff).delete()
        usage_count, _ = UsageRecord.objects.filter(org_id=org.pk, created_at__lt=cutoff).delete()
    if last is not None and count:
        AuditChainHead.objects.filter(chain=str(org.pk), pruned_seq__lt=last[0]).update(
            pruned_seq=last[0], pruned_hash=last[1]
        )
    return count, usage_count


def audit_retention() -> int:
    """Delete raw audit and usage records older than each org's ``audit_retention_days``
    (at least AUDIT_RETENTION_FLOOR_DAYS). Rollups stay."""
    deleted = 0
    for org in Organization.objects.all():
        cutoff = timezone.now() - timedelta(days=retention_days(org))
        with transaction.atomic():
            count, usage_count = _prune(org, cutoff)
            payload_days = org.policy.payload_retention_days
            payload_count, _ = Payload.objects.filter(
                org_id=org.pk, created_at__lt=timezone.now() - timedelta(days=payload_days)
            ).delete()
            deleted += count + usage_count + payload_count
    return deleted


def _setting(org: Organization, name: str) -> float:
    """An alert threshold of the org's policy (``orgs.policy.OrgPolicy``)."""
    return float(getattr(org.policy, name))


def raise_alert(
    org: Organization | None, kind: str, dedupe_key: str, message: str, data: dict
) -> Alert | None:
    """Record an alert once per ``dedupe_key`` and mail the org's owners and admins;
    without an org it is a platform alert for operators (admin only, no mail)."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                org=org, kind=kind, message=message, data=data, dedupe_key=dedupe_key
            )
            audit.record(
                action="alert:raise",
                outcome="success",
                org=org,
                actor_label="system",
                target=alert,
                data={"kind": kind, **data},
            )
    except IntegrityError:
        return None  # already raised for this condition and period
    if org is None:
        logger.error("platform alert %s: %s", kind, message)
        return alert
    recipients = sorted(
        email
        for email in Membership.all_orgs.filter(
            org=org, role__org__isnull=True, role__slug__in=["owner", "admin"]
        ).values_list("user__email", flat=True)
        if email
    )
    if recipients:
        send_mail(
            subject=f"Inferia alert for {org.name}: {message}",
            message=message,
            from_email=None,
            recipient_list=recipients,
            fail_silently=True,
        )
    return alert


def alerts_check(*, now=None) -> list[Alert]:
    """Raise alerts for bursts of failed logins or denials, token spikes and new IP ranges."""
    now = now or timezone.now()
    window = now - timedelta(minutes=15)
    bucket = now.strftime("%Y%m%d%H") + str(now.minute // 15)
    raised: list[Alert | None] = []
    for org in Organization.objects.all():
        usernames = list(
            Membership.all_orgs.filter(org=org).values_list("user__username", flat=True)
        )
        failed = AuditRecord.objects.filter(
            action="auth:login",
            outcome__in=["failure", "denied"],
            actor_label__in=usernames,
            created_at__gte=window,
        ).count()
        if failed >= _setting(org, "alert_failed_logins"):
            raised.append(
                raise_alert(
                    org,
                    Alert.Kind.FAILED_LOGINS,
                    f"{org.pk}:logins:{bucket}",
                    f"{failed} failed logins of members in 15 minutes",
                    {"count": failed},
                )
            )
        denials = AuditRecord.objects.filter(
            org=org, outcome="denied", created_at__gte=window
        ).count()
        if denials >= _setting(org, "alert_denials"):
            raised.append(
                raise_alert(
                    org,
                    Alert.Kind.DENIALS,
                    f"{org.pk}:denials:{bucket}",
                    f"{denials} refused requests in 15 minutes",
                    {"count": denials},
                )
            )
        usage = UsageRecord.objects.filter(org=org, status_code__lt=400)
        last_hour = usage.filter(created_at__gte=now - timedelta(hours=1)).aggregate(
            p=Sum("prompt_tokens"), c=Sum("completion_tokens")
        )
        recent = (last_hour["p"] or 0) + (last_hour["c"] or 0)
        trailing = usage.filter(
            created_at__gte=now - timedelta(hours=25), created_at__lt=now - timedelta(hours=1)
        ).aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
        baseline = ((trailing["p"] or 0) + (trailing["c"] or 0)) / 24
        if recent >= _setting(org, "alert_token_spike_min") and recent > baseline * _setting(
            org, "alert_token_spike_factor"
        ):
            raised.append(
                raise_alert(
                    org,
                    Alert.Kind.TOKEN_SPIKE,
                    f"{org.pk}:tokens:{now:%Y%m%d%H}",
                    f"{recent} tokens in the last hour, {baseline:.0f}/hour usual",
                    {"tokens": recent, "baseline_per_hour": round(baseline, 1)},
                )
            )
        raised.extend(_new_ip_ranges(org, now))
    return [alert for alert in raised if alert is not None]


def _range(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _new_ip_ranges(org: Organization, now) -> list[Alert | None]:
    recent = (
        UsageRecord.objects.filter(
            org=org, created_at__gte=now - timedelta(minutes=15), client_ip__isnull=False
        )
        .exclude(key_prefix="")
        .values_list("key_prefix", "client_ip")
        .distinct()
    )
    alerts = []
    for prefix, ip in recent:
        if ip is None:  # excluded by the filter; the column is nullable
            continue
        network = _range(ip)
        history = (
            UsageRecord.objects.filter(
                org=org,
                key_prefix=prefix,
                client_ip__isnull=False,
                created_at__lt=now - timedelta(minutes=15),
                created_at__gte=now - timedelta(days=30),
            )
            .values_list("client_ip", flat=True)
            .distinct()
        )
        known = {_range(old) for old in history if old is not None}
        if known and network not in known:
            alerts.append(
                raise_alert(
                    org,
                    Alert.Kind.NEW_IP_RANGE,
                    f"{org.pk}:ip:{prefix}:{network}",
                    f"API key {prefix} used from a new address range {network}",
                    {"key_prefix": prefix, "range": network},
                )
            )
    return alerts
