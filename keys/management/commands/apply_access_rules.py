"""GitOps: replace an org's model access rules with a YAML file (all or nothing)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inferia.errors import InferiaError
from keys import access_rules
from orgs.access import PERMISSION_SET, Access
from orgs.models import Organization
from orgs.scoping import org_scope


class Command(BaseCommand):
    help = "Replace the access rules of --org with the authz_rules of FILE."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--dry-run", action="store_true", help="validate only")

    def handle(self, *args, **options) -> None:
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"no organization {options['org']!r}")
        try:
            text = Path(options["file"]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {options['file']}: {exc}") from exc
        # The operator acts with every permission; the audit record names the command.
        operator = Access(org=org, user=None, membership=None, permissions=PERMISSION_SET)
        with org_scope(org):
            try:
                document = access_rules.load_yaml(text)
                if options["dry_run"]:
                    parsed = access_rules.parse_rules(document, org)
                    if isinstance(document, dict) and "deployments" in document:
                        from deployments import services as deployment_services

                        plan = deployment_services.deployments_plan(
                            access=operator, entries=document["deployments"]
                        )
                        self.stdout.write(f"deployments: {plan.changes}")
                    self.stdout.write(f"valid: {len(parsed)} rule(s)")
                    return
                rules = access_rules.access_rules_replace(
                    access=operator, document=document, source="command"
                )
            except InferiaError as exc:
                lines = [
                    f"  {field}: {'; '.join(msgs)}" for field, msgs in (exc.details or {}).items()
                ]
                raise CommandError("\n".join([exc.message, *lines])) from exc
        self.stdout.write(f"applied {len(rules)} rule(s) to {org.slug}")
