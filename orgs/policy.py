"""An organization's policy knobs: one typed, frozen ``OrgPolicy`` with every default.

``Organization.settings`` stores what an admin set (validated on the way in by
``orgs.api.serializers.OrgSettingsInput``, whose fields must be exactly these
knobs: a test holds the two lists together). Everything that reads a knob — the
API, the dashboard, the gateway, the jobs — reads ``org.policy.<knob>`` (or
``access.policy``, ``principal.policy``), never ``org.settings.get(...)``, so a
knob has its type and its default in one place. The ``cache_*`` knobs are in that
list too, but only ``cache:manage`` changes them (``orgs.services.cache``): the
generic settings PATCH refuses them to a caller holding ``org:update`` alone.

``None`` for a limit means "no org-level value": unlimited, or the operator's
default where the gateway has one (``INFERIA_GATEWAY_DEFAULT_*``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

ALLOW, DENY = "allow", "deny"

# Bounds of the response cache's knobs (validated by the API; docs/response-cache.md).
CACHE_TTL_MIN, CACHE_TTL_MAX = 1, 7 * 24 * 3600
CACHE_BYTES_MIN, CACHE_BYTES_MAX = 1024, 1024**3
CACHE_ENTRY_MIN, CACHE_ENTRY_MAX = 256, 16 * 1024 * 1024
# The longest model FQN a purge accepts.
MODEL_FQN_MAX = 260


@dataclass(frozen=True)
class OrgPolicy:
    # Keys
    max_key_lifetime_days: int | None = None
    unused_key_days: int = 30
    # Provider accounts and identity providers: private hosts allowed (SSRF guard).
    allowed_private_hosts: tuple[str, ...] = ()
    # Password login refuses the org's members but its Owners (break-glass: password
    # + 2FA); they sign in through the org's identity provider (``sso``).
    enforce_sso: bool = False
    # Gateway limits (None: unlimited / the operator's default).
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    principal_requests_per_minute: int | None = None
    principal_tokens_per_minute: int | None = None
    key_requests_per_minute: int | None = None
    key_tokens_per_minute: int | None = None
    monthly_token_quota: int | None = None
    monthly_cost_quota: float | None = None
    # What the gateway does when its limit store is down.
    rate_limit_on_backend_error: str = DENY
    quota_on_backend_error: str = DENY
    # Request sizes (None: the operator's INFERIA_GATEWAY_* default).
    default_max_tokens: int | None = None
    max_prompt_chars: int | None = None
    max_body_bytes: int | None = None
    # Prompts and answers are stored (encrypted) only when this is on.
    payload_logging: bool = False
    payload_retention_days: int = 7
    # The gateway's response cache (docs/response-cache.md): off unless turned on, and
    # changed only by holders of ``cache:manage`` (``orgs.services.cache``).
    cache_enabled: bool = False
    cache_ttl_seconds: int = 3600
    cache_max_bytes: int = 64 * 1024 * 1024
    cache_max_entry_bytes: int = 1024 * 1024
    # Audit retention and alerts.
    audit_retention_days: int = 365
    alert_failed_logins: int = 20  # failed logins of the org's members in 15 minutes
    alert_denials: int = 50  # refused requests in the org in 15 minutes
    alert_token_spike_factor: float = 5.0  # last hour's tokens vs the trailing 24 h mean
    alert_token_spike_min: int = 10_000  # and at least this many tokens

    @classmethod
    def knob_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def applied(self, knob: str) -> Any:
        """The value that applies for ``knob``: the org's own, else ``unset_value`` (the
        operator's setting or the policy default). The gateway, sizing and the settings
        page all read a knob's effective value through this one function."""
        return getattr(self, knob) or unset_value(knob)

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> OrgPolicy:
        """The policy of a stored ``Organization.settings``: unset or null knobs take
        their default; unknown keys (from older versions) are ignored."""
        values: dict[str, Any] = {}
        settings = settings or {}
        for knob in fields(cls):
            raw = settings.get(knob.name)
            if raw is None or raw == "":
                continue
            values[knob.name] = _coerce(knob, raw)
        return cls(**values)


def _coerce(knob: dataclasses.Field, raw: Any) -> Any:
    kind = str(knob.type)
    if kind.startswith("tuple"):
        return tuple(str(item) for item in raw)
    if kind.startswith("bool"):
        return bool(raw)
    if kind.startswith("float"):
        return float(raw)
    if kind.startswith("int"):
        return int(raw)
    return str(raw)


# Knobs whose "no org-level value" falls back to an operator setting (read through
# ``OrgPolicy.applied`` by the gateway's limits and sizing): the dashboard states these numbers.
OPERATOR_DEFAULTS: dict[str, str] = {
    "key_requests_per_minute": "INFERIA_GATEWAY_DEFAULT_KEY_RPM",
    "key_tokens_per_minute": "INFERIA_GATEWAY_DEFAULT_KEY_TPM",
    "default_max_tokens": "INFERIA_GATEWAY_DEFAULT_MAX_TOKENS",
    "max_prompt_chars": "INFERIA_GATEWAY_MAX_PROMPT_CHARS",
    "max_body_bytes": "INFERIA_MAX_BODY_BYTES",
}
_UNSET_MEANS: dict[str, str] = {
    "max_key_lifetime_days": "no limit (keys may also never expire)",
    "requests_per_minute": "no org-wide limit (per-key limits still apply)",
    "tokens_per_minute": "no org-wide limit (per-key limits still apply)",
    "principal_requests_per_minute": "no per-member limit for API-key calls",
    "principal_tokens_per_minute": "no per-member limit for API-key calls",
    "monthly_token_quota": "no quota",
    "monthly_cost_quota": "no quota",
}


def unset_value(knob: str) -> Any:
    """What applies when an org leaves ``knob`` empty: the operator's setting for knobs
    in ``OPERATOR_DEFAULTS``, else the policy default (``None``: nothing applies)."""
    from django.conf import settings

    if knob in OPERATOR_DEFAULTS:
        return getattr(settings, OPERATOR_DEFAULTS[knob])
    return next(f.default for f in fields(OrgPolicy) if f.name == knob)


def unset_meaning(knob: str) -> str:
    """``unset_value`` in words, for the settings page ("Empty: 600")."""
    value = unset_value(knob)
    if value is None:
        return _UNSET_MEANS.get(knob, "not set")
    if knob in OPERATOR_DEFAULTS:
        return f"{value:,} (the server's default)"
    return f"{value:,}"
