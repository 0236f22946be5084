"""Operator console for deployments/: every org's deployments and versions, read-only.

Routing, status and deletion change through the services (API, dashboard, YAML import),
which check the org's accounts and the editor's model access, audit the change, bump the
epoch and drive the launchers; an edit here would skip all of that.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from deployments.models import Deployment, DeploymentVersion
from orgs.admin import AllOrgsAdmin


def _pretty(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=False))


class ReadOnlyAdmin(AllOrgsAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ("name", "org", "status", "version", "created_by", "updated_at")
    list_filter = ("org", "status")
    search_fields = ("name", "description", "org__slug")
    fields = (
        "org",
        "name",
        "description",
        "status",
        "status_reason",
        "version",
        "routing",
        "launcher_spec",
        "launcher_reported",
        "created_by",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="Routing (current version)")
    def routing(self, obj: Deployment) -> str:
        return _pretty(obj.config)

    @admin.display(description="Launcher spec")
    def launcher_spec(self, obj: Deployment) -> str:
        return _pretty(obj.launcher)

    @admin.display(description="Launcher state")
    def launcher_reported(self, obj: Deployment) -> str:
        return _pretty(obj.launcher_state)


@admin.register(DeploymentVersion)
class DeploymentVersionAdmin(ReadOnlyAdmin):
    list_display = ("deployment", "number", "org", "rolled_back_from", "created_by", "created_at")
    list_filter = ("org",)
    search_fields = ("deployment__name", "comment", "org__slug")
    fields = (
        "org",
        "deployment",
        "number",
        "routing",
        "comment",
        "rolled_back_from",
        "created_by",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="Routing")
    def routing(self, obj: DeploymentVersion) -> str:
        return _pretty(obj.config)
