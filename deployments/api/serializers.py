"""Input and output serializers of the deployments API.

A deployment's body is flat: its name, description and launcher spec beside the fields
of its routing document (``deployments.config``), the same shape as an entry of
``deployments.yaml``. The routing fields are taken as sent and checked by the one
routing grammar (``deployments.config.parse``), whose errors name the path
(``targets[0].weight``).
"""

from __future__ import annotations

from rest_framework import serializers

from deployments.models import Deployment, DeploymentStatus, DeploymentVersion
from inferia.serializers import InputSerializer
from orgs.models import slug_validator

ROUTING_HELP = {
    "strategy": "priority | weighted | least_busy | lowest_latency (default priority).",
    "targets": (
        "1 to 16 targets: {name, account, model} (a provider account of the org and one of "
        "its enabled models) or {name, launched: true, model}; optional weight, priority, "
        "timeout_seconds, input_price_per_million, output_price_per_million, "
        "requires_access, max_quota_percent."
    ),
    "retries": "Extra attempts on other targets after the first (0-5, default 1).",
    "fallback_on": "Upstream failures that fall over: any of 429, 5xx, timeout, connect.",
    "breaker": "{failures, window_seconds, cooldown_seconds}: the passive circuit breaker.",
    "health_check": "{enabled, interval_seconds}: the active health check.",
}


class RoutingInputMixin(serializers.Serializer):
    strategy = serializers.JSONField(required=False, help_text=ROUTING_HELP["strategy"])
    targets = serializers.JSONField(required=False, help_text=ROUTING_HELP["targets"])
    retries = serializers.JSONField(required=False, help_text=ROUTING_HELP["retries"])
    fallback_on = serializers.JSONField(required=False, help_text=ROUTING_HELP["fallback_on"])
    breaker = serializers.JSONField(required=False, help_text=ROUTING_HELP["breaker"])
    health_check = serializers.JSONField(required=False, help_text=ROUTING_HELP["health_check"])


class DeploymentCreateInput(RoutingInputMixin, InputSerializer):
    name = serializers.CharField(
        max_length=50,
        validators=[slug_validator],
        help_text="Called through the gateway as deployment/<name>.",
    )
    description = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default=""
    )
    launcher = serializers.DictField(
        required=False,
        help_text="Optional: {kind: local | kubernetes, ...} starts a self-hosted endpoint "
        "for the deployment's launched targets.",
    )
    comment = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default="", help_text="Version note."
    )


class DeploymentUpdateInput(RoutingInputMixin, InputSerializer):
    """Routing fields given replace those of the current document (a new version)."""

    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    status = serializers.ChoiceField(
        choices=[DeploymentStatus.READY, DeploymentStatus.STOPPED],
        required=False,
        help_text="stopped pauses the deployment (the gateway serves no new call); ready resumes.",
    )
    comment = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class DeploymentRollbackInput(InputSerializer):
    version = serializers.IntegerField(min_value=1, max_value=2_147_483_647)
    comment = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class TargetOutput(serializers.Serializer):
    name = serializers.CharField()
    account = serializers.CharField(required=False)
    launched = serializers.BooleanField(required=False)
    model = serializers.CharField()
    weight = serializers.FloatField()
    priority = serializers.IntegerField()
    timeout_seconds = serializers.FloatField()
    requires_access = serializers.BooleanField()
    input_price_per_million = serializers.FloatField(required=False)
    output_price_per_million = serializers.FloatField(required=False)
    max_quota_percent = serializers.FloatField(required=False)


class DeploymentOutput(serializers.ModelSerializer):
    fqn = serializers.CharField(help_text="The gateway's model name: deployment/<name>.")
    strategy = serializers.CharField(source="config.strategy")
    targets = TargetOutput(many=True, source="config.targets")
    retries = serializers.IntegerField(source="config.retries")
    fallback_on = serializers.ListField(child=serializers.CharField(), source="config.fallback_on")
    breaker = serializers.DictField(source="config.breaker")
    health_check = serializers.DictField(source="config.health_check")
    created_by = serializers.CharField(source="created_by.username", allow_null=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "name",
            "fqn",
            "description",
            "status",
            "status_reason",
            "version",
            "strategy",
            "targets",
            "retries",
            "fallback_on",
            "breaker",
            "health_check",
            "launcher",
            "launcher_state",
            "created_by",
            "created_at",
            "updated_at",
        ]


class DeploymentVersionOutput(serializers.ModelSerializer):
    config = serializers.DictField(help_text="The routing document of this version.")
    created_by = serializers.CharField(source="created_by.username", allow_null=True)

    class Meta:
        model = DeploymentVersion
        fields = ["number", "config", "comment", "rolled_back_from", "created_by", "created_at"]


class TargetCheckOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    at = serializers.DateTimeField()
    latency_ms = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class TargetHealthOutput(serializers.Serializer):
    name = serializers.CharField()
    fqn = serializers.CharField(help_text="account/model; empty for a launched target")
    state = serializers.ChoiceField(
        choices=["closed", "open", "half_open", "unknown"],
        help_text="The target's circuit breaker: closed (serving), open (skipped until "
        "open_until), half_open (one probe call let through), unknown (never called or "
        "checked).",
    )
    failures = serializers.IntegerField()
    open_until = serializers.DateTimeField(allow_null=True)
    last_check = TargetCheckOutput(allow_null=True)


class DeploymentHealthOutput(serializers.Serializer):
    deployment = serializers.CharField()
    status = serializers.CharField()
    status_reason = serializers.CharField(required=False)
    targets = TargetHealthOutput(many=True)


class DeploymentsDocument(serializers.Serializer):
    """The YAML (or JSON) document of ``/deployments.yaml``."""

    deployments = serializers.ListField(
        child=serializers.DictField(),
        help_text="Each entry: name, description, launcher and the routing fields.",
    )


class DeploymentsReplacedOutput(serializers.Serializer):
    created = serializers.ListField(child=serializers.CharField())
    updated = serializers.ListField(child=serializers.CharField())
    deleted = serializers.ListField(child=serializers.CharField())
    results = DeploymentOutput(many=True)
