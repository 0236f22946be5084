# Inferia: the web app (API, dashboard, gateway), the Celery worker and Celery beat
# all run from this one image; the command picks the role (deploy/compose.yaml,
# deploy/helm/inferia). Build from the repository root:
#
#   docker build -t inferia:0.1.0 .
#
# Nothing secret is baked in: keys, DATABASE_URL and REDIS_URL come from the
# environment (or *_FILE) at run time. The image runs as an unprivileged user and
# writes nothing outside /tmp, so it works with a read-only root file system.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- 1. wheels of every dependency, pinned by pyproject.toml ----------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY inferia ./inferia
COPY orgs ./orgs
COPY keys ./keys
COPY gateway ./gateway
COPY audit ./audit
COPY sso ./sso
COPY scim ./scim
# The dependencies' wheels only: the app itself runs from its source tree (below),
# where its templates and static files live beside the packages.
RUN pip wheel --wheel-dir /wheels . \
    && rm /wheels/inferia-*.whl

# --- 2. the runtime: no compiler, no pip cache, no build tree ----------------------------
FROM ${PYTHON_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INFERIA_ENV=production \
    INFERIA_VAR_DIR=/app/var \
    INFERIA_LOG_FORMAT=json \
    PORT=8000 \
    WEB_CONCURRENCY=1
RUN groupadd --system --gid 10001 inferia \
    && useradd --system --uid 10001 --gid inferia --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin inferia
# xmlsec1 verifies SAML signatures (sso/saml.py, through pysaml2): Debian's package,
# the base image's release's version, no recommends, no package lists left behind.
RUN apt-get update \
    && apt-get install -y --no-install-recommends xmlsec1=1.2.37-2 \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl
WORKDIR /app
COPY manage.py ./
COPY inferia ./inferia
COPY orgs ./orgs
COPY keys ./keys
COPY gateway ./gateway
COPY audit ./audit
COPY sso ./sso
COPY scim ./scim
COPY templates ./templates
COPY static ./static
# collectstatic in the production profile (hashed, compressed files for whitenoise);
# then var/ keeps only static/ (the build's embedded database and broker directory go).
# Everything under /app stays root's: the app cannot rewrite its own code.
# The settings refuse to load without keys and hosts: throwaway random values that
# live only in this RUN's environment, so no key is written to a layer.
RUN INFERIA_SECRET_KEY="$(head -c 48 /dev/urandom | base64)" \
    INFERIA_JWT_SIGNING_KEY="$(head -c 48 /dev/urandom | base64)" \
    INFERIA_MASTER_KEYS="build:$(head -c 32 /dev/urandom | base64)" \
    INFERIA_ALLOWED_HOSTS=localhost INFERIA_PRINT_CONFIG=false \
    python manage.py collectstatic --noinput --verbosity 0 \
    && find /app/var -mindepth 1 -maxdepth 1 ! -name static -exec rm -rf {} + \
    && chmod -R a+rX,go-w /app
USER 10001:10001
EXPOSE 8000
# Liveness: /healthz answers 200 without touching a dependency. Django checks the
# Host header, so the probe names the first of INFERIA_ALLOWED_HOSTS.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; host = os.environ.get('INFERIA_ALLOWED_HOSTS', 'localhost').split(',')[0].strip().lstrip('.') or 'localhost'; r = u.urlopen(u.Request('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', headers={'Host': host}), timeout=4); sys.exit(0 if r.status == 200 else 1)"]
# The README's production command: one uvicorn process a core ($WEB_CONCURRENCY is
# uvicorn's --workers), lifespan on, behind a TLS proxy that sets X-Forwarded-Proto.
CMD ["uvicorn", "inferia.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--loop", "uvloop", "--http", "httptools", "--backlog", "4096", "--timeout-keep-alive", "75", "--no-access-log", "--no-proxy-headers", "--lifespan", "on"]
