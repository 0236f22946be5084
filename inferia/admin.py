from __future__ import annotations

from django.contrib import admin

from inferia.models import WindowCounter


@admin.register(WindowCounter)
class WindowCounterAdmin(admin.ModelAdmin):
    list_display = ("key", "window_start", "count", "expires_at")
    search_fields = ("key",)
