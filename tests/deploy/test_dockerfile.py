"""The Dockerfile: hadolint clean, and the essentials a platform team relies on
(multi-stage, non-root, nothing secret baked in, the README's command, a health check).
No image is built here (no registry of base images is reachable)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

from inferia.server import UVICORN_OPTIONS
from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "a continuation line runs past the end of the file"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, args in _instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, args))
    return stages


def test_hadolint_finds_nothing(hadolint):
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_reports_classic_mistakes(hadolint, tmp_path):
    """The same linter on a Dockerfile with classic mistakes reports each: the check
    above can fail."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install flask\nCMD python app.py\n")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3003", "DL3013", "DL3025"):
        assert rule in result.stdout, result.stdout


def test_two_stages_and_the_runtime_copies_only_built_wheels():
    stages = _stages()
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert re.search(r"\bAS build\b", build[0][1], re.IGNORECASE)
    assert any("pip wheel" in args for instruction, args in build if instruction == "RUN")
    runtime_runs = [args for instruction, args in runtime if instruction == "RUN"]
    assert any("from=build" in args and "--no-index" in args for args in runtime_runs)
    # The runtime compiles nothing and installs no Python package from a registry; its
    # one system package is xmlsec1 (SAML signatures), pinned, without recommends.
    assert not any(
        re.search(r"build-essential|gcc|-dev\b|pip install (?!--no-index)", a) for a in runtime_runs
    )
    apt_installs = [a for a in runtime_runs if "apt-get install" in a]
    assert len(apt_installs) == 1, apt_installs
    install = apt_installs[0].split("apt-get install", 1)[1].split("&&", 1)[0]
    assert "--no-install-recommends" in install
    assert [word for word in install.split() if not word.startswith("-")] == ["xmlsec1=1.2.37-2"]
    assert "rm -rf /var/lib/apt/lists/*" in apt_installs[0]


def test_the_runtime_runs_as_an_unprivileged_user():
    runtime = _stages()[-1]
    users = [args.split(":")[0] for instruction, args in runtime if instruction == "USER"]
    assert users, "the runtime stage never switches user"
    assert users[-1] not in ("root", "0")
    # Nothing after the last USER switches back.
    last_user = max(i for i, (instruction, _) in enumerate(runtime) if instruction == "USER")
    assert all(instruction != "USER" for instruction, _ in runtime[last_user + 1 :])


def test_no_secret_is_baked_into_the_image():
    secret_names = re.compile(
        r"(SECRET|PASSWORD|TOKEN|MASTER_KEYS|SIGNING_KEY|DATABASE_URL|REDIS_URL)"
    )
    for instruction, args in _instructions():
        if instruction in ("ENV", "ARG", "LABEL"):
            assert not secret_names.search(args), (instruction, args)
    text = DOCKERFILE.read_text()
    # Build-time keys for collectstatic are random and live in one RUN's environment.
    assert re.search(r'INFERIA_SECRET_KEY="\$\(head -c \d+ /dev/urandom', text)
    assert "collectstatic" in text
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[:3] == [
        "# Only what the image needs goes into the build context (Dockerfile COPY lines).",
        "**",
        "!pyproject.toml",
    ]
    assert not any(line.startswith("!") and ("var" in line or ".env" in line) for line in ignored)
    assert "**/.env" in ignored


def test_every_copied_path_is_in_the_build_context():
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for instruction, args in _instructions():
        if instruction == "COPY" and "--from" not in args:
            sources = [part for part in shlex.split(args) if not part.startswith("--")][:-1]
            for source in sources:
                assert source.rstrip("/") in allowed, source
                assert (ROOT / source).exists(), source


def test_the_command_is_the_readme_production_command_and_health_is_checked():
    instructions = _instructions()
    (cmd,) = [json.loads(args) for instruction, args in instructions if instruction == "CMD"]
    readme = (ROOT / "README.md").read_text()
    # The one command line of inferia/server.py (what `manage.py serve` and bench/ run),
    # and the README's production command carries the same options.
    options = " ".join(UVICORN_OPTIONS)
    assert re.search(
        r"`uvicorn inferia\.asgi:application --workers N\s+"
        + r"\s+".join(map(re.escape, options.split()))
        + "`",
        readme,
    )
    assert cmd[:2] == ["uvicorn", "inferia.asgi:application"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - a container listens on all
    without_address = cmd[2:]
    for flag in ("--host", "--port"):
        at = without_address.index(flag)
        del without_address[at : at + 2]
    assert without_address == list(UVICORN_OPTIONS)
    # --workers N is uvicorn's WEB_CONCURRENCY, set in the image (and by the chart).
    envs = " ".join(args for instruction, args in instructions if instruction == "ENV")
    assert re.search(r"\bWEB_CONCURRENCY=1\b", envs)
    assert re.search(r"\bINFERIA_ENV=production\b", envs)
    (health,) = [args for instruction, args in instructions if instruction == "HEALTHCHECK"]
    assert "/healthz" in health and "CMD" in health
