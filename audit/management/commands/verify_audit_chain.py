"""Check the hash chains of the audit log and report the first broken link."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit import chain
from audit.models import AuditChainHead
from orgs.models import Organization


class Command(BaseCommand):
    help = "Verify every audit chain (or --org SLUG); exit 1 at the first broken link."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--org", help="only this organization's chain")

    def handle(self, *args, **options) -> None:
        if options["org"]:
            org = Organization.objects.filter(slug=options["org"]).first()
            if org is None:
                raise CommandError(f"no organization {options['org']!r}")
            chains = [str(org.pk)]
        else:
            chains = list(AuditChainHead.objects.order_by("chain").values_list("chain", flat=True))
        total = 0
        for name in chains:
            checked, broken = chain.verify(name)
            total += checked
            if broken is not None:
                raise CommandError(
                    f"chain {broken.chain}: broken at seq {broken.seq} (record {broken.record_id}): {broken.reason}"
                )
        self.stdout.write(f"ok: {len(chains)} chain(s), {total} record(s) verified")
