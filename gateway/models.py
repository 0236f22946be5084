"""The gateway's one table: per-org epochs for the embedded (no Redis) mode."""

from __future__ import annotations

from django.db import models


class OrgEpoch(models.Model):
    """Bumped whenever anything that decides access in an org changes.

    Every gateway process compares it with the epoch its cached entries were
    built at; with Redis the counter lives there instead.
    """

    org_id = models.UUIDField(primary_key=True)
    value = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.org_id}={self.value}"
