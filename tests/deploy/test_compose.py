"""deploy/compose.yaml: valid for Compose itself (``config``, offline), and the
shape a deployment relies on: web, worker, beat and a one-shot migrate from one
image; PostgreSQL and Redis external unless the ``local`` profile starts them."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.deploy.conftest import COMPOSE

REQUIRED = {
    "INFERIA_SECRET_KEY": "s" * 50,
    "INFERIA_JWT_SIGNING_KEY": "j" * 50,
    "INFERIA_MASTER_KEYS": "k1:" + "A" * 43 + "=",
    "INFERIA_ALLOWED_HOSTS": "inferia.example.com",
    "DATABASE_URL": "postgres://inferia@db.internal:5432/inferia",
    "REDIS_URL": "redis://redis.internal:6379/0",
}


def _config(compose: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run(
        [*compose, "-f", str(COMPOSE), *args, "config"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=COMPOSE.parent,
        timeout=60,
    )


def test_compose_validates_and_resolves(compose):
    result = _config(compose, REQUIRED)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    for name in ("web", "worker", "beat", "migrate"):
        environment = resolved[name]["environment"]
        for variable, value in REQUIRED.items():
            assert environment[variable] == value, (name, variable)


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_a_missing_secret_or_service_url_is_refused(compose, missing):
    result = _config(compose, {k: v for k, v in REQUIRED.items() if k != missing})
    assert result.returncode != 0
    assert missing in result.stderr, result.stderr


def test_the_local_profile_adds_postgres_and_redis(compose):
    result = _config(compose, REQUIRED, "--profile", "local")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"postgres", "redis"} <= set(services)
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendfsync") + 1] == "everysec"


def test_roles_share_one_image_and_run_unprivileged():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    app = ("migrate", "web", "worker", "beat")
    assert {services[name]["image"] for name in app} == {"${INFERIA_IMAGE:-inferia:0.1.0}"}
    for name in app:
        service = services[name]
        assert service["user"] == "10001:10001" and service["read_only"] is True
        assert service["tmpfs"] == ["/tmp"] and service["cap_drop"] == ["ALL"]  # noqa: S108
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"
    assert services["worker"]["command"][:4] == ["celery", "-A", "inferia", "worker"]
    beat = services["beat"]
    assert beat["command"][:4] == ["celery", "-A", "inferia", "beat"]
    # The root file system is read-only: the schedule lives in /tmp.
    assert "/tmp/celerybeat-schedule" in beat["command"]  # noqa: S108
    assert "deploy" not in beat and "scale" not in beat  # exactly one beat
    # The database and Redis are external unless the local profile is asked for.
    for name in ("postgres", "redis"):
        assert services[name]["profiles"] == ["local"]
    for name in app:
        assert "profiles" not in services[name]
