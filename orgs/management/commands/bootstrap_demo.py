"""Create the demo organization and user for a first ``make run`` (idempotent)."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from orgs.models import Organization, User
from orgs.services import tenancy


class Command(BaseCommand):
    help = "Create the 'demo' user and the 'demo' organization it owns, and print how to log in."

    def handle(self, *args, **options) -> None:
        password_file = settings.VAR_DIR / "demo_password"
        with transaction.atomic():
            user = User.objects.filter(username="demo").first()
            if user is None:
                password = secrets.token_urlsafe(12)
                user = User(username="demo", email="demo@example.com")
                user.set_password(password)
                user.save()
                fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(password)
            if not Organization.objects.filter(slug="demo").exists():
                tenancy.organization_create(user=user, slug="demo", name="Demo")
        password = password_file.read_text().strip() if password_file.exists() else "(set earlier)"
        port = os.environ.get("PORT", "8000")
        self.stdout.write(
            "\nDemo ready: organization 'demo', owner 'demo'.\n"
            f"  username: demo\n  password: {password}\n"
            f"  curl -s -X POST http://127.0.0.1:{port}/api/v1/auth/login "
            "-H 'Content-Type: application/json' "
            f'-d \'{{"username": "demo", "password": "{password}"}}\'\n'
            f"  API docs: http://127.0.0.1:{port}/api/docs/\n"
        )
