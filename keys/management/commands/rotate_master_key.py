"""Re-wrap every data key with the first key of INFERIA_MASTER_KEYS (safe while serving)."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from inferia import crypto
from keys.models import ProviderAccount
from orgs.models import TOTPDevice
from sso.models import IdentityProvider


class Command(BaseCommand):
    help = (
        "After putting a new master key first in INFERIA_MASTER_KEYS (old keys after it), "
        "re-wrap every provider secret, SSO client secret and TOTP seed with it. Then the old key can be dropped."
    )

    def handle(self, *args, **options) -> None:
        primary = crypto.key_ring().primary_id
        counts = {"provider secrets": 0, "SSO client secrets": 0, "TOTP seeds": 0}
        # Cross-org by design: an operator command over every tenant.
        for pk in ProviderAccount.all_orgs.exclude(encrypted_secret="").values_list(
            "pk", flat=True
        ):
            with transaction.atomic():
                account = ProviderAccount.all_orgs.select_for_update().get(pk=pk)
                rewrapped = crypto.rewrap(
                    account.encrypted_secret, context=account.secret_context()
                )
                if rewrapped != account.encrypted_secret:
                    ProviderAccount.all_orgs.filter(pk=pk).update(encrypted_secret=rewrapped)
                    counts["provider secrets"] += 1
        # The operator's command reaches every app's secrets (sso imports keys, not back).
        for pk in IdentityProvider.all_orgs.exclude(encrypted_client_secret="").values_list(
            "pk", flat=True
        ):
            with transaction.atomic():
                idp = IdentityProvider.all_orgs.select_for_update().get(pk=pk)
                rewrapped = crypto.rewrap(idp.encrypted_client_secret, context=idp.secret_context())
                if rewrapped != idp.encrypted_client_secret:
                    IdentityProvider.all_orgs.filter(pk=pk).update(
                        encrypted_client_secret=rewrapped
                    )
                    counts["SSO client secrets"] += 1
        for pk in TOTPDevice.objects.values_list("pk", flat=True):
            with transaction.atomic():
                device = TOTPDevice.objects.select_for_update().get(pk=pk)
                rewrapped = crypto.rewrap(device.encrypted_seed, context=device._context())
                if rewrapped != device.encrypted_seed:
                    TOTPDevice.objects.filter(pk=pk).update(encrypted_seed=rewrapped)
                    counts["TOTP seeds"] += 1
        summary = ", ".join(f"{n} {what}" for what, n in counts.items())
        self.stdout.write(f"re-wrapped with master key {primary}: {summary}")
