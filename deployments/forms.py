"""Dashboard forms of deployments/: they read the YAML boxes; services do the work."""

from __future__ import annotations

from typing import Any

import yaml
from django import forms

from inferia.errors import ValidationError as InferiaValidationError
from keys import access_rules
from orgs.forms import slug_field

CONFIG_HELP = (
    "The routing document: strategy (priority, weighted, least_busy, lowest_latency), "
    "targets (each a provider account and one of its models, or launched: true), retries, "
    "fallback_on, breaker, health_check. See docs/deployments.md."
)
LAUNCHER_HELP = (
    "Optional, only when creating: {kind: local} or {kind: kubernetes, ...} starts a "
    "self-hosted endpoint for the launched targets."
)


def _mapping(text: str, *, required: bool) -> dict[str, Any]:
    if not text.strip():
        if required:
            raise forms.ValidationError("Required.")
        return {}
    try:
        value = access_rules.load_yaml(text)
    except InferiaValidationError as exc:
        problems = (exc.details or {}).get("yaml", [])
        raise forms.ValidationError(f"{exc.message}: {'; '.join(problems)}") from exc
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise forms.ValidationError("A YAML mapping (key: value lines).")
    return value


def config_text(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False) if config else ""


class DeploymentForm(forms.Form):
    name = forms.CharField(
        max_length=50,
        validators=[slug_field],
        help_text="Called through the gateway as deployment/<name>.",
    )
    description = forms.CharField(max_length=500, required=False)
    config = forms.CharField(
        label="Routing (YAML)",
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
        help_text=CONFIG_HELP,
    )
    launcher = forms.CharField(
        label="Launcher spec (YAML, optional)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text=LAUNCHER_HELP,
    )
    comment = forms.CharField(max_length=500, required=False, label="Version note")

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            # The name is what callers and access rules use; the launcher is fixed at creation.
            del self.fields["name"]
            del self.fields["launcher"]

    def clean_config(self) -> dict[str, Any]:
        return _mapping(self.cleaned_data["config"], required=True)

    def clean_launcher(self) -> dict[str, Any]:
        return _mapping(self.cleaned_data.get("launcher", ""), required=False)
