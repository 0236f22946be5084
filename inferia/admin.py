from __future__ import annotations

from django.contrib import admin

from inferia import clock
from inferia.models import WindowCounter


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
