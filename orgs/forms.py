"""Dashboard forms of orgs/: they validate input; services do the work."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.core.validators import RegexValidator

from orgs import policy
from orgs.access import PERMISSIONS, permission_groups

slug_field = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$", "Lowercase letters, digits and dashes."
)


def set_choices(form: forms.BaseForm, name: str, choices: Iterable[tuple[str, str]]) -> None:
    """Give a form's own copy of a choice field its choices, known only per request."""
    field = form.fields[name]
    if not isinstance(field, forms.ChoiceField):
        raise TypeError(f"{type(form).__name__}.{name} is not a choice field")
    field.choices = choices


class LoginForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        max_length=4096,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class OtpForm(forms.Form):
    otp_code = forms.CharField(
        label="Code from your authenticator app (or a recovery code)",
        max_length=64,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


class PasswordChangeForm(forms.Form):
    current_password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    new_password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    new_password_again = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("new_password") and data.get("new_password") != data.get("new_password_again"):
            self.add_error("new_password_again", "The two passwords differ.")
        return data


class InvitationSignupForm(forms.Form):
    """A new account for an invited e-mail address (the invitation supplies the address)."""

    username = forms.CharField(
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password_again = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("password") and data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data


class OrganizationCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.CharField(
        max_length=50, validators=[slug_field], help_text="Used in URLs, e.g. acme."
    )


class InvitationForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField()

    def __init__(self, *args, roles=(), **kwargs):
        super().__init__(*args, **kwargs)
        set_choices(self, "role", [(r.slug, r.name) for r in roles])


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField()

    def __init__(self, *args, roles=(), **kwargs):
        super().__init__(*args, **kwargs)
        set_choices(self, "role", [(r.slug, r.name) for r in roles])


class TeamForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.CharField(max_length=50, validators=[slug_field])
    description = forms.CharField(max_length=500, required=False)


class TeamMemberForm(forms.Form):
    username = forms.ChoiceField(label="Member")

    def __init__(self, *args, members=(), **kwargs):
        super().__init__(*args, **kwargs)
        set_choices(self, "username", [(m.user.username, m.user.username) for m in members])


def permission_choices():
    return [(p, p) for p in PERMISSIONS]


class RoleForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.CharField(max_length=50, validators=[slug_field])
    description = forms.CharField(max_length=500, required=False)
    permissions = forms.MultipleChoiceField(
        choices=permission_choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    # Shown grouped by resource, each with its one-line description.
    scope_groups = permission_groups(PERMISSIONS)


class CacheSettingsForm(forms.Form):
    """The response cache's knobs (``orgs.services.cache``), with the API's bounds."""

    enabled = forms.BooleanField(required=False, label="Cache answers for this organization")
    ttl_seconds = forms.IntegerField(
        min_value=policy.CACHE_TTL_MIN,
        max_value=policy.CACHE_TTL_MAX,
        label="Time to live (seconds)",
        help_text="How long a stored answer is served. At most 7 days.",
    )
    max_bytes = forms.IntegerField(
        min_value=policy.CACHE_BYTES_MIN,
        max_value=policy.CACHE_BYTES_MAX,
        label="Size cap (bytes)",
        help_text="Past it, the entries that expire first make room.",
    )
    max_entry_bytes = forms.IntegerField(
        min_value=policy.CACHE_ENTRY_MIN,
        max_value=policy.CACHE_ENTRY_MAX,
        label="Largest answer stored (bytes)",
    )


class CachePurgeForm(forms.Form):
    model = forms.CharField(
        required=False,
        max_length=policy.MODEL_FQN_MAX,
        label="Model",
        help_text="A model FQN such as openai-main/gpt-4o-mini. Empty: every model.",
    )


class SettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    require_2fa = forms.BooleanField(
        required=False, label="Require two-factor authentication for every member"
    )
    max_key_lifetime_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, label="Longest API key lifetime (days)"
    )
    audit_retention_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, label="Audit retention (days)"
    )
    requests_per_minute = forms.IntegerField(
        min_value=1, required=False, label="Org requests per minute"
    )
    tokens_per_minute = forms.IntegerField(
        min_value=1, required=False, label="Org tokens per minute"
    )
    key_requests_per_minute = forms.IntegerField(
        min_value=1, required=False, label="Default requests per minute per key"
    )
    key_tokens_per_minute = forms.IntegerField(
        min_value=1, required=False, label="Default tokens per minute per key"
    )
    monthly_token_quota = forms.IntegerField(
        min_value=1, required=False, label="Monthly token quota"
    )
    monthly_cost_quota = forms.FloatField(min_value=0, required=False, label="Monthly cost quota")
    allowed_private_hosts = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Private endpoints allowed as provider base URLs",
        help_text="One host or host:port a line, e.g. 127.0.0.1:9000 or vllm.internal.",
    )

    SETTING_FIELDS = (
        "max_key_lifetime_days",
        "audit_retention_days",
        "requests_per_minute",
        "tokens_per_minute",
        "key_requests_per_minute",
        "key_tokens_per_minute",
        "monthly_token_quota",
        "monthly_cost_quota",
    )

    def clean_allowed_private_hosts(self) -> list[str]:
        hosts = [
            line.strip()
            for line in self.cleaned_data["allowed_private_hosts"].splitlines()
            if line.strip()
        ]
        bad = [h for h in hosts if len(h) > 255 or " " in h or "/" in h]
        if bad:
            raise forms.ValidationError(f"Not a host or host:port: {', '.join(bad)}")
        return hosts

    def changes(self) -> dict:
        data = self.cleaned_data
        settings = {name: data.get(name) for name in self.SETTING_FIELDS}
        settings["allowed_private_hosts"] = data["allowed_private_hosts"]
        return {"name": data["name"], "require_2fa": data["require_2fa"], "settings": settings}


class DeviceCodeForm(forms.Form):
    """The code a CLI or other tool shows (``BCDF-GHJK``); the service checks it."""

    user_code = forms.CharField(
        label="Code shown by your device",
        max_length=20,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "autocapitalize": "characters",
                "spellcheck": "false",
                "autofocus": True,
                "placeholder": "XXXX-XXXX",
            }
        ),
    )
