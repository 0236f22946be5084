"""deploy/helm/inferia: Helm's own lint (Helm 4's library through helm-sdkpy: the
chart's metadata, values.schema.json, and every template rendered and parsed as
Kubernetes objects), under several sets of values, as ``helm lint --strict`` would:
no warning, no error. And the shape a platform team relies on, read from the chart.

No registry here ships the helm binary, so there is no ``helm template`` output to
validate against the Kubernetes schemas; lint renders every template itself."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import CHART

# helm.sh/helm/v4/pkg/chart/v2/lint/support: 1 info, 2 warning, 3 error.
WARNING = 2
LINT = """
import asyncio, json, sys
from helm_sdkpy import Configuration, Lint
result = asyncio.run(Lint(Configuration()).run(sys.argv[1]))
print(json.dumps([[m["Severity"], m["Path"]] for m in result.get("Messages") or []]))
"""


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _lint(helm_python: str, tmp_path: Path, overrides: dict) -> tuple[list[tuple[int, str]], str]:
    """Lint a copy of the chart whose values.yaml carries ``overrides`` (helm-sdkpy's
    lint takes no --set); answers (severity, path) of every message, and Helm's log
    (where lint reports a missing ``required`` value, as a warning)."""
    chart = tmp_path / "inferia"
    shutil.copytree(CHART, chart)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (chart / "values.yaml").write_text(yaml.safe_dump(_merge(values, overrides)))
    result = subprocess.run(
        [helm_python, "-c", LINT, str(chart)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [tuple(message) for message in json.loads(result.stdout)], result.stderr


SECRETS = {
    "create": True,
    "secretKey": "s" * 50,
    "jwtSigningKey": "j" * 50,
    "masterKeys": "k1:" + "A" * 43 + "=",
    "databaseUrl": "postgres://inferia@db:5432/inferia",
    "redisUrl": "redis://redis:6379/0",
}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "secrets": SECRETS,
            "web": {
                "ingress": {
                    "enabled": True,
                    "className": "nginx",
                    "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "10m"},
                    "tls": {"enabled": True, "secretName": "inferia-tls"},
                },
                "replicas": 4,
                "processes": 2,
            },
            "config": {"extraEnv": {"INFERIA_GATEWAY_REDIS_TIMEOUT": "0.5"}},
            "imagePullSecrets": [{"name": "registry"}],
        },
        {"web": {"podDisruptionBudget": {"enabled": False}}, "migrations": {"enabled": False}},
    ],
    ids=["defaults", "chart-secret-ingress-tls", "no-pdb-no-migrations"],
)
def test_helm_lint_is_clean(helm_python, tmp_path, overrides):
    messages, log = _lint(helm_python, tmp_path, overrides)
    assert [m for m in messages if m[0] >= WARNING] == []
    assert "missing required values" not in log, log


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"web": {"replicas": 0}}, "values.yaml"),  # values.schema.json: minimum 1
        ({"beat": {"replicas": 2}}, "values.yaml"),  # beat has no replicas knob
        ({"config": {"allowedHosts": []}}, "values.yaml"),
    ],
    ids=["zero-web-replicas", "two-beats", "no-hosts"],
)
def test_helm_lint_refuses_bad_values(helm_python, tmp_path, overrides, path):
    messages, _log = _lint(helm_python, tmp_path, overrides)
    errors = [m for m in messages if m[0] > WARNING]
    assert any(m[1].startswith(path) for m in errors), errors


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({"secrets": {"create": True}}, "secrets.secretKey is required with secrets.create"),
        (
            {"secrets": {"create": True, **{k: v for k, v in SECRETS.items() if k != "redisUrl"}}},
            "secrets.redisUrl is required with secrets.create",
        ),
        ({"secrets": {"existingSecret": ""}}, "secrets.existingSecret (or secrets.create: true)"),
        (
            {"web": {"ingress": {"enabled": True, "tls": {"enabled": True}}}},
            "web.ingress.tls.secretName is required with TLS",
        ),
    ],
    ids=["empty-chart-secret", "no-redis-url", "no-secret-at-all", "tls-without-secret"],
)
def test_helm_lint_names_a_missing_required_value(helm_python, tmp_path, overrides, missing):
    """``helm install`` stops on these; lint (which renders with required values
    relaxed) logs each as "missing required values"."""
    _messages, log = _lint(helm_python, tmp_path, overrides)
    assert "missing required values" in log and missing in log, log


def _template(name: str) -> str:
    return (CHART / "templates" / name).read_text()


def test_beat_is_one_replica_recreated_never_two():
    beat = _template("beat-deployment.yaml")
    assert "\n  replicas: 1\n" in beat
    assert "strategy:\n    type: Recreate\n" in beat
    assert ".Values.beat.replicas" not in beat


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook_after_their_config():
    job = _template("migrations-job.yaml")
    assert "kind: Job" in job and "helm.sh/hook: pre-install,pre-upgrade" in job
    assert '"manage.py", "migrate", "--noinput"' in job
    for name in ("configmap.yaml", "secret.yaml"):  # created before the Job (weight -10 < 0)
        text = _template(name)
        assert "helm.sh/hook: pre-install,pre-upgrade" in text
        assert 'helm.sh/hook-weight: "-10"' in text
    assert 'helm.sh/hook-weight: "0"' in job


def test_web_has_probes_a_pdb_and_every_pod_is_locked_down():
    web = _template("web-deployment.yaml")
    assert "path: /healthz" in web and "path: /readyz" in web
    assert web.count("name: Host") == 3  # Django checks the Host header of probes too
    assert "kind: PodDisruptionBudget" in _template("web-pdb.yaml")
    assert "kind: Service" in _template("web-service.yaml")
    assert "kind: Ingress" in _template("web-ingress.yaml")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["podSecurityContext"]["runAsUser"] != 0
    container = values["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    for name in ("web", "worker", "beat", "migrations"):
        assert {"cpu", "memory"} <= set(values[name]["resources"]["requests"]), name
    for name in ("web-deployment.yaml", "worker-deployment.yaml", "beat-deployment.yaml"):
        text = _template(name)
        assert "securityContext:" in text and 'include "inferia.podCommon"' in text
        assert 'include "inferia.envFrom"' in text and 'include "inferia.tmpMount"' in text


def test_the_secret_carries_every_key_the_settings_require():
    secret = _template("secret.yaml")
    for key in (
        "INFERIA_SECRET_KEY",
        "INFERIA_JWT_SIGNING_KEY",
        "INFERIA_MASTER_KEYS",
        "DATABASE_URL",
        "REDIS_URL",
    ):
        assert f"  {key}: {{{{ required " in secret, key
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["secrets"]["create"] is False and values["secrets"]["existingSecret"]
