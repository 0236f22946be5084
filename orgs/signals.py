"""Signals orgs/ sends for housekeeping elsewhere (caches), without importing them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent when something that decides access changed through a bulk update (no
# post_save): kwargs ``org_ids``. The gateway bumps those orgs' epochs.
access_changed = Signal()

# Sent inside ``member_remove``'s transaction, before the membership row goes:
# kwargs ``membership``, ``access`` (who removes), ``meta``. keys/ revokes the
# member's personal API keys (audited), so they stay dead if the person rejoins.
member_removed = Signal()


def user_org_ids(user) -> list:
    from orgs.models import Membership

    # Cross-org by design: a user's own memberships.
    return list(Membership.all_orgs.filter(user=user).values_list("org_id", flat=True))
