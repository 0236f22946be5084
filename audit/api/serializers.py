from __future__ import annotations

from rest_framework import serializers

from audit.models import AuditRecord, Outcome


class AuditQueryInput(serializers.Serializer):
    actor = serializers.CharField(required=False, max_length=200)
    action = serializers.CharField(required=False, max_length=100)
    outcome = serializers.ChoiceField(choices=Outcome.choices, required=False)
    target = serializers.CharField(required=False, max_length=100)
    model = serializers.CharField(required=False, max_length=260)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    format = serializers.ChoiceField(
        choices=["json", "csv", "jsonl"], required=False, default="json"
    )
    cursor = serializers.CharField(required=False)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=1000)


class AuditRecordOutput(serializers.ModelSerializer):
    """A record as listed; a gateway call's numbers come from its usage record
    (``selectors.with_usage`` sets ``metered`` on each record first)."""

    actor = serializers.CharField(source="actor_label")
    latency_ms = serializers.FloatField(source="metered.latency_ms", allow_null=True)
    provider_account = serializers.CharField(source="metered.provider_account")
    prompt_tokens = serializers.IntegerField(source="metered.prompt_tokens", allow_null=True)
    completion_tokens = serializers.IntegerField(
        source="metered.completion_tokens", allow_null=True
    )

    class Meta:
        model = AuditRecord
        fields = [
            "id",
            "created_at",
            "action",
            "outcome",
            "status_code",
            "actor",
            "actor_user_id",
            "client_ip",
            "user_agent",
            "request_id",
            "target_type",
            "target_id",
            "latency_ms",
            "model",
            "provider_account",
            "prompt_tokens",
            "completion_tokens",
            "data",
            "seq",
            "hash",
        ]


class UsageQueryInput(serializers.Serializer):
    group_by = serializers.ChoiceField(
        choices=["model", "key", "user", "team", "service_account"], default="model"
    )
    period = serializers.ChoiceField(choices=["hour", "day"], default="day")
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    model = serializers.CharField(required=False, max_length=260)
    key = serializers.CharField(required=False, max_length=32)
    user = serializers.CharField(required=False, max_length=150)
