from __future__ import annotations

from django.contrib import admin

from inferia import clock
from inferia.models import BreakerRecord, WindowCounter


class ExpiredFilter(admin.SimpleListFilter):
    title = "expired"
    parameter_name = "expired"

    def lookups(self, request, model_admin):
        return (("yes", "Expired"), ("no", "Current"))

    def queryset(self, request, queryset):
        now = int(clock.time())
        if self.value() == "yes":
            return queryset.filter(expires_at__lt=now)
        if self.value() == "no":
            return queryset.filter(expires_at__gte=now)
        return queryset


@admin.register(WindowCounter)
class WindowCounterAdmin(admin.ModelAdmin):
    list_display = ("key", "window_start", "count", "expires_at")
    list_filter = (ExpiredFilter,)
    search_fields = ("key",)


class BreakerStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("closed", "Closed"), ("open", "Open"), ("half_open", "Half-open"))

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(fields__state=self.value())
        return queryset


@admin.register(BreakerRecord)
class BreakerRecordAdmin(admin.ModelAdmin):
    """Circuit breakers of deployment targets in the embedded store (read-only: the
    gateway and the health check write them)."""

    list_display = ("key", "state", "updated_at")
    list_filter = (BreakerStateFilter,)
    search_fields = ("key",)
    readonly_fields = ("key", "fields", "updated_at")

    @admin.display(description="state")
    def state(self, obj: BreakerRecord) -> str:
        return str(obj.fields.get("state", "closed"))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
