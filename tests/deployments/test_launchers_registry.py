"""Which launchers a server offers: ``INFERIA_LAUNCHERS``, checked by ``launchers.get`` on
every call; the production profile never offers the local one (it spawns processes)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from deployments import launchers
from deployments.launchers.kubernetes import KubernetesLauncher
from deployments.launchers.local import LocalLauncher
from inferia.errors import ValidationError


def test_both_launchers_are_registered_and_offered_in_tests(settings):
    assert settings.INFERIA_LAUNCHERS == ["local", "kubernetes"]  # inferia/test_settings.py
    assert launchers.enabled() == ["local", "kubernetes"]
    assert isinstance(launchers.get("local"), LocalLauncher)
    assert isinstance(launchers.get("kubernetes"), KubernetesLauncher)


def test_a_kind_that_is_not_enabled_is_refused(settings):
    settings.INFERIA_LAUNCHERS = ["kubernetes"]
    with pytest.raises(ValidationError) as caught:
        launchers.get("local")
    assert caught.value.details == {
        "launcher.kind": [
            "The 'local' launcher is not enabled on this server; enabled: kubernetes."
        ]
    }
    with pytest.raises(ValidationError):  # the spec check goes through the same door
        launchers.validate({"kind": "local", "model": "m"})
    assert launchers.enabled() == ["kubernetes"]
    assert launchers.get("kubernetes").kind == "kubernetes"


@pytest.mark.parametrize("kind", ["docker", "", None, 3, ["local"]])
def test_an_unknown_kind_is_refused_naming_the_enabled_ones(settings, kind):
    settings.INFERIA_LAUNCHERS = ["local", "kubernetes"]
    with pytest.raises(ValidationError) as caught:
        launchers.validate({"kind": kind, "model": "m"})
    assert caught.value.details == {"launcher.kind": ["One of: local, kubernetes."]}


def test_validate_normalizes_through_the_launcher_of_the_kind(settings):
    settings.INFERIA_LAUNCHERS = ["local", "kubernetes"]
    assert launchers.validate({}) == {}  # no launcher: the targets are registered endpoints
    assert launchers.validate(None) == {}
    assert launchers.validate({"kind": "local", "model": "demo"}) == {
        "kind": "local",
        "model": "demo",
    }
    assert launchers.validate({"kind": "kubernetes", "model": "m"})["image"].startswith(
        "vllm/vllm-openai:"
    )
    with pytest.raises(ValidationError) as caught:
        launchers.validate(["local"])
    assert caught.value.details == {"launcher": ["Required mapping."]}


# --- the setting, read by the real settings module in a subprocess ---------------------------


def settings_env(tmp_path, **overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INFERIA_", "DJANGO_", "CELERY_"))
        and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(DJANGO_SETTINGS_MODULE="inferia.settings", INFERIA_VAR_DIR=str(tmp_path / "var"))
    env.update(overrides)
    return env


def production(tmp_path, **overrides: str) -> dict[str, str]:
    return settings_env(
        tmp_path,
        INFERIA_ENV="production",
        INFERIA_SECRET_KEY=secrets.token_urlsafe(50),
        INFERIA_JWT_SIGNING_KEY=secrets.token_urlsafe(64),
        INFERIA_MASTER_KEYS="k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        INFERIA_ALLOWED_HOSTS="inferia.example.com",
        **overrides,
    )


def launchers_setting(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.INFERIA_LAUNCHERS))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_embedded_run_offers_both_and_production_only_kubernetes(tmp_path):
    embedded = launchers_setting(settings_env(tmp_path))
    assert embedded.returncode == 0, embedded.stderr
    assert json.loads(embedded.stdout) == ["local", "kubernetes"]
    deployed = launchers_setting(production(tmp_path))
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout) == ["kubernetes"]


def test_production_refuses_the_local_launcher(tmp_path):
    result = launchers_setting(production(tmp_path, INFERIA_LAUNCHERS="local,kubernetes"))
    assert result.returncode != 0
    assert "INFERIA_LAUNCHERS cannot enable 'local' with INFERIA_ENV=production" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("INFERIA_LAUNCHERS", "docker", "INFERIA_LAUNCHERS: each one of local, kubernetes"),
        ("INFERIA_LAUNCHER_LOCAL_PORTS", "80-90", "INFERIA_LAUNCHER_LOCAL_PORTS must be"),
        ("INFERIA_LAUNCHER_LOCAL_PORTS", "9000", "INFERIA_LAUNCHER_LOCAL_PORTS must be"),
    ],
)
def test_malformed_launcher_settings_stop_start_up(tmp_path, name, value, message):
    result = launchers_setting(settings_env(tmp_path, **{name: value}))
    assert result.returncode != 0
    assert message in result.stderr
