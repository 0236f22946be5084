"""Shared tables of the platform plumbing (not tenant data)."""

from __future__ import annotations

from django.db import models


class WindowCounter(models.Model):
    """A fixed-window counter for the embedded (no Redis) limit store."""

    key = models.CharField(max_length=128)
    window_start = models.BigIntegerField()
    count = models.BigIntegerField(default=0)
    expires_at = models.BigIntegerField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="uniq_counter_window")
        ]

    def __str__(self) -> str:
        return f"{self.key}@{self.window_start}={self.count}"


class BreakerRecord(models.Model):
    """A circuit breaker's state for the embedded (no Redis) store
    (``inferia.store.breaker``): one row per breaker, changed under a row lock."""

    key = models.CharField(max_length=128, unique=True)
    fields = models.JSONField(default=dict)
    updated_at = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.key}={self.fields.get('state', 'closed')}"
