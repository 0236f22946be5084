"""Dashboard forms of keys/: they validate input; services do the work."""

from __future__ import annotations

import re

from django import forms

from keys.models import ProviderType
from orgs.access import permission_groups
from orgs.forms import set_choices, slug_field

_SPLIT = re.compile(r"[\s,]+")


def split_names(text: str) -> list[str]:
    return [part for part in _SPLIT.split(text or "") if part]


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    permissions = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        label="Scopes",
        help_text="Only the permissions you hold are offered; the key can never do more.",
    )
    models = forms.CharField(
        required=False,
        label="Models (optional)",
        help_text=(
            "Restrict the key to these models, e.g. openai-main/gpt-4o, openai-main/* or "
            "vllm-local/meta-llama/*. Empty: every model you may use."
        ),
    )
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, label="Expires in (days)"
    )
    service_account = forms.ChoiceField(required=False, label="Owner")

    def __init__(self, *args, permissions=(), service_accounts=(), **kwargs):
        super().__init__(*args, **kwargs)
        set_choices(self, "permissions", [(p, p) for p in permissions])
        # Shown grouped by resource, each with its one-line description.
        self.scope_groups = permission_groups(permissions)
        set_choices(
            self,
            "service_account",
            [("", "Me"), *((a.slug, f"Service account {a.slug}") for a in service_accounts)],
        )
        if not service_accounts:
            del self.fields["service_account"]

    def clean_models(self) -> list[str]:
        return split_names(self.cleaned_data["models"])


class ServiceAccountForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.CharField(max_length=50, validators=[slug_field])
    description = forms.CharField(max_length=500, required=False)
    role = forms.ChoiceField()

    def __init__(self, *args, roles=(), **kwargs):
        super().__init__(*args, **kwargs)
        set_choices(self, "role", [(r.slug, r.name) for r in roles])


def _parse_pairs(text: str, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise forms.ValidationError(f"Write one {what} a line as key=value: {line!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        pairs[key] = value
    return pairs


class ProviderAccountForm(forms.Form):
    name = forms.CharField(
        max_length=50,
        validators=[slug_field],
        help_text="Models are called name/model, e.g. openai-main/gpt-4o.",
    )
    provider_type = forms.ChoiceField(choices=ProviderType.choices)
    base_url = forms.URLField(max_length=500, assume_scheme="https")
    api_version = forms.CharField(max_length=50, required=False, label="API version (Azure)")
    models = forms.CharField(
        required=False,
        label="Enabled models",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Model names separated by spaces, commas or new lines; a name may hold '/', "
        "e.g. meta-llama/Llama-3.1-8B-Instruct.",
    )
    tags = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One key=value a line, e.g. env=prod.",
    )
    secret = forms.CharField(
        required=False,
        strip=True,
        label="Upstream API key",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}, render_value=False),
        help_text="Write-only: stored encrypted and never shown again.",
    )

    PRICES = (("input", "input_price_per_million"), ("output", "output_price_per_million"))

    def add_price_fields(self, entries: list[dict]) -> None:
        """One input and one output price field per enabled model (USD, or the org's
        currency, per million tokens): non-negative decimals, empty for none."""
        self.price_models = [entry["name"] for entry in entries]
        for index, entry in enumerate(entries):
            for side, key in self.PRICES:
                self.fields[f"price_{side}_{index}"] = forms.DecimalField(
                    required=False,
                    min_value=0,
                    max_digits=12,
                    decimal_places=6,
                    label=f"{entry['name']}: {side} price per million tokens",
                    initial=entry.get(key),
                    widget=forms.NumberInput(attrs={"step": "any", "min": "0"}),
                )

    def clean_models(self) -> list[dict]:
        return [{"name": name} for name in split_names(self.cleaned_data["models"])]

    def models_with_prices(self, current: list[dict]) -> list[dict]:
        """The cleaned models, each with its price: the one typed on this form, else the
        one it had (a model added in the same save starts without)."""
        typed: dict[str, dict] = {}
        for index, name in enumerate(getattr(self, "price_models", [])):
            if not any(f"price_{side}_{index}" in self.data for side, _key in self.PRICES):
                continue  # not on the submitted form: keep what it had
            typed[name] = {
                key: self.cleaned_data.get(f"price_{side}_{index}") for side, key in self.PRICES
            }
        before = {entry["name"]: entry for entry in current}
        result = []
        for entry in self.cleaned_data["models"]:
            name = entry["name"]
            prices = typed.get(name) or {
                key: before.get(name, {}).get(key) for _side, key in self.PRICES
            }
            result.append(
                {
                    "name": name,
                    **{key: float(value) for key, value in prices.items() if value is not None},
                }
            )
        return result

    def clean_tags(self) -> dict[str, str]:
        return _parse_pairs(self.cleaned_data["tags"], "tag")


class ProviderSecretForm(forms.Form):
    secret = forms.CharField(
        strip=True,
        label="New upstream API key",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}, render_value=False),
    )
    otp_code = forms.CharField(
        required=False,
        max_length=16,
        label="Code from your authenticator app",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text="Replacing a secret needs a fresh code when you use two-factor authentication.",
    )


def _names(value: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", value or "") if part]


class AccessRuleForm(forms.Form):
    """One rule: model patterns and at least one subject, names separated by spaces or commas."""

    models = forms.CharField(
        max_length=2000,
        help_text="account/model, account/*, account/prefix/*, * or tag=value",
    )
    users = forms.CharField(max_length=2000, required=False, help_text="usernames")
    teams = forms.CharField(max_length=2000, required=False, help_text="team slugs")
    roles = forms.CharField(
        max_length=2000, required=False, help_text="role slugs or names (member or Member)"
    )
    service_accounts = forms.CharField(
        max_length=2000, required=False, help_text="service account slugs"
    )
    description = forms.CharField(max_length=500, required=False)

    def rule(self) -> dict:
        data = self.cleaned_data
        rule = {
            name: _names(data[name])
            for name in ("models", "users", "teams", "roles", "service_accounts")
        }
        if data["description"]:
            rule["description"] = data["description"]
        return rule


class AccessRulesImportForm(forms.Form):
    document = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
        label="Access rules (YAML)",
    )
