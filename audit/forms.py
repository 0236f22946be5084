"""Dashboard forms of audit/: the usage time range and the request log filters."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone

from audit.models import UsageRollup
from audit.selectors import USAGE_GROUPS

RANGES = (
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("custom", "Custom"),
)
GROUPS = (("model", "Model"), ("key", "API key"), ("user", "User"), ("team", "Team"))
# Longest custom range; hourly periods up to two days, daily beyond.
MAX_RANGE_DAYS = 366
HOURLY_UP_TO = timedelta(days=2)
STATUS = re.compile(r"^(?:[1-5]xx|[1-5][0-9]{2})$")


def _day_start(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class RangeForm(forms.Form):
    """A time range: one of the presets, or custom ``from``/``to`` days (both included)."""

    range = forms.ChoiceField(choices=RANGES, required=False, initial="7d")
    start = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def add_prefix(self, field_name: str) -> str:
        # The query string says from/to (``from`` is a Python keyword, not a field name).
        return {"start": "from", "end": "to"}.get(field_name, field_name)

    def clean(self) -> dict:
        data = super().clean() or {}
        chosen = data.get("range") or "7d"
        data["range"] = chosen
        if chosen == "custom":
            start, end = data.get("start"), data.get("end")
            if start is None or end is None:
                raise forms.ValidationError("Choose both days of a custom range.")
            if end < start:
                self.add_error("end", "The last day comes before the first.")
            elif (end - start).days + 1 > MAX_RANGE_DAYS:
                self.add_error("end", f"A range spans at most {MAX_RANGE_DAYS} days.")
        return data

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime, str]:
        """``(since, until, period)`` of the valid range: the presets end with the
        current hour (24 h) or day; hourly periods up to two days, daily beyond."""
        now = now or timezone.now()
        chosen = self.cleaned_data["range"]
        if chosen == "24h":
            until = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            return until - timedelta(hours=24), until, UsageRollup.Period.HOUR
        if chosen == "custom":
            since = _day_start(self.cleaned_data["start"])
            until = _day_start(self.cleaned_data["end"]) + timedelta(days=1)
        else:
            days = 7 if chosen == "7d" else 30
            until = _day_start(timezone.localdate(now)) + timedelta(days=1)
            since = until - timedelta(days=days)
        period = (
            UsageRollup.Period.HOUR if until - since <= HOURLY_UP_TO else UsageRollup.Period.DAY
        )
        return since, until, period


class UsageForm(RangeForm):
    group = forms.ChoiceField(choices=GROUPS, required=False, initial="model", label="Group by")

    def clean_group(self) -> str:
        group = self.cleaned_data.get("group") or "model"
        if group not in USAGE_GROUPS:
            raise forms.ValidationError("Unknown grouping.")
        return group


class RequestLogForm(RangeForm):
    key = forms.CharField(required=False, max_length=32, label="Key prefix")
    model = forms.CharField(required=False, max_length=260)
    status = forms.CharField(
        required=False, max_length=3, help_text="A code (429) or a class (5xx)."
    )

    def clean_status(self) -> str:
        status = self.cleaned_data["status"].strip().lower()
        if status and not STATUS.match(status):
            raise forms.ValidationError("A status code such as 429, or a class such as 5xx.")
        return status
