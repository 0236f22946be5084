"""Dashboard forms of knowledge bases: they read the fields; services do the work."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from orgs.forms import set_choices, slug_field


class KnowledgeBaseForm(forms.Form):
    name = forms.CharField(
        max_length=50, validators=[slug_field], help_text="Lowercase letters, digits and hyphens."
    )
    description = forms.CharField(max_length=500, required=False)
    embedding_model = forms.ChoiceField(
        label="Embedding model",
        help_text="Documents and queries are embedded by this model, as the person uploading "
        "or searching (through the gateway: their limits and costs apply).",
    )
    chunk_size = forms.IntegerField(min_value=100, max_value=8000, initial=1000)
    chunk_overlap = forms.IntegerField(min_value=0, max_value=4000, initial=200)

    def __init__(self, *args: Any, models: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_choices(self, "embedding_model", [(m, m) for m in models])


class UploadForm(forms.Form):
    file = forms.FileField(
        help_text="Plain text, Markdown, HTML or PDF. Uploading a name again replaces it."
    )
    name = forms.CharField(max_length=255, required=False, help_text="Defaults to the file's name.")
    metadata = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text='Optional JSON object, e.g. {"team": "hr", "year": 2026}: queries can filter on it.',
    )

    def clean_metadata(self) -> dict[str, Any]:
        text = self.cleaned_data["metadata"].strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError("Not valid JSON.") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("A JSON object ({...}).")
        return value


class QueryForm(forms.Form):
    query = forms.CharField(max_length=2000, widget=forms.TextInput(attrs={"size": 60}))
    top_k = forms.IntegerField(min_value=1, max_value=50, initial=5, label="Results")
