"""The deployment sketch's own linters (installed by ``deploy/lint-tools.sh`` into
``.tools/``; CI runs that script, so nothing here is skipped there)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_or_skip

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("INFERIA_LINT_TOOLS", ROOT / ".tools"))
CHART = ROOT / "deploy" / "helm" / "inferia"
COMPOSE = ROOT / "deploy" / "compose.yaml"
INSTALL = "run `bash deploy/lint-tools.sh`"


@pytest.fixture(scope="session")
def hadolint() -> str:
    for candidate in (TOOLS / "py" / "bin" / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    require_or_skip(f"hadolint is not installed ({INSTALL})")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def compose() -> list[str]:
    """``docker compose`` (the plugin) or ``docker-compose`` (Debian's 1.29)."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    require_or_skip(f"neither `docker compose` nor `docker-compose` is installed ({INSTALL})")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def helm_python() -> str:
    """The Python of the venv holding helm-sdkpy (Helm 4's library)."""
    python = TOOLS / "helm" / "bin" / "python"
    if python.is_file():
        probe = subprocess.run([str(python), "-c", "import helm_sdkpy"], capture_output=True)
        if probe.returncode == 0:
            return str(python)
    require_or_skip(f"helm-sdkpy (Helm's lint) is not installed ({INSTALL})")
    raise AssertionError("unreachable")
