"""The production profile (INFERIA_ENV=production), checked in subprocesses:
``check --deploy`` is clean, missing secrets stop start-up, admin needs OTP."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

HOST = "inferia.example.com"


def production_env(tmp_path, **overrides: str | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INFERIA_", "DJANGO_", "CELERY_"))
        and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="inferia.settings",
        INFERIA_ENV="production",
        INFERIA_SECRET_KEY=secrets.token_urlsafe(50),
        INFERIA_JWT_SIGNING_KEY=secrets.token_urlsafe(64),
        INFERIA_MASTER_KEYS="k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        INFERIA_ALLOWED_HOSTS=HOST,
        INFERIA_VAR_DIR=str(tmp_path / "var"),
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_nothing(tmp_path):
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path)
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in result.stdout, output
    assert "WARNING" not in output and "?: (" not in output, output
    assert "env=production" in result.stderr  # the start-up line says what was chosen


def test_check_deploy_would_catch_a_weak_setting(tmp_path):
    # The same command fails when a deploy check does fire: the test above can fail.
    env = production_env(tmp_path, INFERIA_HSTS_SECONDS="0")
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "missing",
    [
        "INFERIA_SECRET_KEY",
        "INFERIA_JWT_SIGNING_KEY",
        "INFERIA_MASTER_KEYS",
        "INFERIA_ALLOWED_HOSTS",
    ],
)
def test_production_without_a_required_setting_stops(tmp_path, missing):
    result = run(["manage.py", "check"], production_env(tmp_path, **{missing: None}))
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured" in result.stderr, result.stderr
    assert missing in result.stderr
    # Nothing was generated in its place.
    assert not (tmp_path / "var" / "secret_key").exists()
    assert not (tmp_path / "var" / "master_keys").exists()


def test_production_with_debug_stops(tmp_path):
    result = run(["manage.py", "check"], production_env(tmp_path, INFERIA_DEBUG="1"))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr


def test_production_refuses_the_jwt_key_equal_to_the_secret_key(tmp_path):
    same = secrets.token_urlsafe(50)
    env = production_env(tmp_path, INFERIA_SECRET_KEY=same, INFERIA_JWT_SIGNING_KEY=same)
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "INFERIA_JWT_SIGNING_KEY" in result.stderr


ADMIN_SCENARIO = """
import json

import django

django.setup()
from django.contrib import admin
from django.core.management import call_command
from django.test import Client
from django.conf import settings
from inferia.admin_config import InferiaAdminSite
from django_otp.oath import TOTP

from inferia import clock
from orgs.models import User
from orgs.services import two_factor

call_command("migrate", verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)  # the manifest storage needs it
out = {
    "site_is_otp": isinstance(admin.site, InferiaAdminSite) and settings.INFERIA_ADMIN_REQUIRES_OTP
}
root = User.objects.create_superuser("root", "root@example.com", "a-long-enough-passphrase")
# Behind the TLS proxy, which sets X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER).
https = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": "%(host)s"}

# A superuser with a password session but no verified device.
client = Client(**https)
client.force_login(root)
response = client.get("/admin/")
out["no_device"] = [response.status_code, response.get("Location", "")]

# The admin login form wants a device and a code; a password alone is refused.
client = Client(**https)
response = client.post("/admin/login/?next=/admin/", {"username": "root", "password": "a-long-enough-passphrase"})
out["password_only_login"] = response.status_code
out["after_password_only"] = client.get("/admin/").status_code

# With a confirmed TOTP device and a current code, the same superuser gets in.
def code(device):
    totp = TOTP(device.seed_plaintext(), step=30, digits=6)
    totp.time = clock.time()
    return str(totp.token()).zfill(6)

two_factor.totp_setup(user=root)
device = root.totpdevice_set.get()
two_factor.totp_confirm(user=root, otp_code=code(device))
device.refresh_from_db()
clock.advance(30)
client = Client(**https)
response = client.post(
    "/admin/login/?next=/admin/",
    {
        "username": "root",
        "password": "a-long-enough-passphrase",
        "otp_device": device.persistent_id,
        "otp_token": code(device),
    },
)
out["otp_login"] = [response.status_code, response.get("Location", "")]
out["after_otp_login"] = client.get("/admin/").status_code
print("RESULT " + json.dumps(out))
"""


def test_production_admin_requires_a_verified_otp_device(tmp_path):
    result = run(["-c", ADMIN_SCENARIO % {"host": HOST}], production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert out["site_is_otp"] is True
    assert out["no_device"] == [302, "/admin/login/?next=/admin/"]
    assert out["password_only_login"] == 403  # the form again: enrol 2FA first
    assert out["after_password_only"] == 302
    assert out["otp_login"] == [302, "/admin/"]
    assert out["after_otp_login"] == 200
