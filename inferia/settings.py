"""Inferia settings: read top to bottom; the only module that reads the environment.

With nothing set, the project runs on embedded defaults (SQLite and a
filesystem broker under ``var/``) and generates its keys once into ``var/``
with mode 0600. ``INFERIA_ENV=production`` (or ``DATABASE_URL`` set with debug
off) refuses to start without explicit secrets and allowed hosts.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from inferia import cors_policy

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _env_secret(name: str) -> str | None:
    """A secret from NAME, or from the file named by NAME_FILE."""
    value = env.str(name, default="")
    if value:
        return value
    path = env.str(f"{name}_FILE", default="")
    if path:
        return Path(path).read_text().strip()
    return None


VAR_DIR = Path(env.str("INFERIA_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)

INFERIA_ENV = env.str("INFERIA_ENV", default="development")
if INFERIA_ENV not in ("development", "production"):
    raise ImproperlyConfigured("INFERIA_ENV must be 'development' or 'production'")
PRODUCTION = INFERIA_ENV == "production"
DEBUG = env.bool("INFERIA_DEBUG", default=False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("INFERIA_DEBUG cannot be on with INFERIA_ENV=production")

DATABASE_URL = env.str("DATABASE_URL", default="")
REDIS_URL = env.str("REDIS_URL", default="")
# A deployment: production profile, or an external database without debug.
DEPLOYMENT = PRODUCTION or (bool(DATABASE_URL) and not DEBUG)


def _generated_secret(name: str, filename: str, make) -> str:
    """Embedded and debug runs keep generated secrets in var/ (mode 0600)."""
    value = _env_secret(name)
    if value:
        return value
    if DEPLOYMENT:
        raise ImproperlyConfigured(f"{name} (or {name}_FILE) must be set in a deployment")
    path = VAR_DIR / filename
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    return path.read_text().strip()


SECRET_KEY = _generated_secret(
    "INFERIA_SECRET_KEY", "secret_key", lambda: secrets.token_urlsafe(50)
)
# One key, one job: JWTs are signed with their own key, never SECRET_KEY.
INFERIA_JWT_SIGNING_KEY = _generated_secret(
    "INFERIA_JWT_SIGNING_KEY", "jwt_signing_key", lambda: secrets.token_urlsafe(64)
)
# Key ring "id:base64key,id:base64key": the first wraps, all unwrap.
INFERIA_MASTER_KEYS = _generated_secret(
    "INFERIA_MASTER_KEYS",
    "master_keys",
    lambda: "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
)
if SECRET_KEY == INFERIA_JWT_SIGNING_KEY:
    raise ImproperlyConfigured("INFERIA_JWT_SIGNING_KEY must differ from INFERIA_SECRET_KEY")

_default_hosts = [] if DEPLOYMENT else ["127.0.0.1", "localhost", "[::1]", "testserver"]
ALLOWED_HOSTS = env.list("INFERIA_ALLOWED_HOSTS", default=_default_hosts)
if DEPLOYMENT and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("INFERIA_ALLOWED_HOSTS must be set in a deployment")
CSRF_TRUSTED_ORIGINS = env.list("INFERIA_CSRF_TRUSTED_ORIGINS", default=[])

# --- Cross-origin requests (inferia.cors: the one policy of the API and the gateway) -------
# Exact origins, comma-separated; none by default (no cross-origin access). "*" stands
# alone and is refused together with credentials.
INFERIA_CORS_ALLOW_CREDENTIALS = env.bool("INFERIA_CORS_ALLOW_CREDENTIALS", default=False)
_cors_origins = cors_policy.validate_origins(
    env.list("INFERIA_CORS_ORIGINS", default=[]),
    allow_credentials=INFERIA_CORS_ALLOW_CREDENTIALS,
)
CORS_ALLOW_ALL_ORIGINS = _cors_origins == ["*"]
CORS_ALLOWED_ORIGINS = [] if CORS_ALLOW_ALL_ORIGINS else _cors_origins
CORS_ALLOW_CREDENTIALS = INFERIA_CORS_ALLOW_CREDENTIALS
CORS_ALLOW_METHODS = [
    m.upper() for m in env.list("INFERIA_CORS_METHODS", default=list(cors_policy.DEFAULT_METHODS))
]
CORS_ALLOW_HEADERS = env.list("INFERIA_CORS_HEADERS", default=list(cors_policy.DEFAULT_HEADERS))
CORS_EXPOSE_HEADERS = list(cors_policy.EXPOSE_HEADERS)
CORS_PREFLIGHT_MAX_AGE = env.int("INFERIA_CORS_MAX_AGE", default=600)
# The REST API and the gateway; dashboard pages and admin are same-origin only.
CORS_URLS_REGEX = r"^/api/"

INSTALLED_APPS = [
    # django.contrib.admin, with an OTP-only site when INFERIA_ADMIN_REQUIRES_OTP.
    "inferia.admin_config.InferiaAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_otp",
    "guardian",
    "inferia",
    "orgs",
    "keys",
    "gateway",
    "audit",
    "sso",
    "scim",
    "deployments",
    "knowledge",
]

MIDDLEWARE = [
    "inferia.middleware.RequestIdMiddleware",
    "inferia.request_log.RequestLogMiddleware",
    "inferia.cors.CorsMiddleware",
    "inferia.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "inferia.middleware.SessionLifetimeMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "inferia.urls"
WSGI_APPLICATION = "inferia.wsgi.application"
ASGI_APPLICATION = "inferia.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orgs.context_processors.dashboard",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# SQLite is shared by the web process and the worker: WAL lets readers and one
# writer work at once, IMMEDIATE takes the write lock up front, and the timeout
# waits for it instead of failing with "database is locked".
_SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
if DATABASE_URL:
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("INFERIA_DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["ENGINE"] = "inferia.sqlite"  # with sqlite-vec (inferia/sqlite)
        DATABASES["default"]["OPTIONS"] = _SQLITE_OPTIONS | DATABASES["default"].get("OPTIONS", {})
    # A pooler in transaction mode (pgbouncer's pool_mode=transaction) hands each
    # transaction to any server connection: nothing may outlive one. So no server-side
    # cursors (QuerySet.iterator() DECLAREs one by default) and no prepared statements:
    # Django binds client-side (psycopg prepares nothing), kept so here even if
    # OPTIONS ask for server-side binding (psycopg would prepare a query after its
    # 5th run; prepare_threshold=None never does). Django's own pool stays off.
    INFERIA_DB_POOLER = env.str("INFERIA_DB_POOLER", default="")
    if INFERIA_DB_POOLER not in ("", "pgbouncer"):
        raise ImproperlyConfigured("INFERIA_DB_POOLER must be empty or 'pgbouncer'")
    if INFERIA_DB_POOLER and "postgresql" not in DATABASES["default"]["ENGINE"]:
        raise ImproperlyConfigured("INFERIA_DB_POOLER=pgbouncer needs a PostgreSQL DATABASE_URL")
    if INFERIA_DB_POOLER:
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
        DATABASES["default"]["OPTIONS"] = {
            **DATABASES["default"].get("OPTIONS", {}),
            "server_side_binding": False,
            "prepare_threshold": None,
            "pool": False,
        }
else:
    DATABASES = {
        "default": {
            # Django's SQLite backend with sqlite-vec loaded (inferia/sqlite).
            "ENGINE": "inferia.sqlite",
            "NAME": VAR_DIR / "inferia.sqlite3",
            # A file, not memory, so a worker process sees what the tests write.
            "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
            "OPTIONS": dict(_SQLITE_OPTIONS),
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, broker ----------------------------------------------------------------
# Shared state (counters, windows, epochs, the usage stream) lives in inferia.store,
# on REDIS_URL (plain, TLS, unix socket, Sentinel or Cluster: docs/state.md) or the
# database; Django's cache holds nothing shared. The Celery broker is kombu's own
# connection: INFERIA_BROKER_URL, by default REDIS_URL when that is one plain server
# (a Cluster or Sentinel URL needs an explicit broker URL kombu understands).
INFERIA_BROKER_URL = env.str("INFERIA_BROKER_URL", default="")
if REDIS_URL:
    if not INFERIA_BROKER_URL:
        if not REDIS_URL.startswith(("redis://", "rediss://")):
            raise ImproperlyConfigured(
                "REDIS_URL is a Sentinel or Cluster URL: set INFERIA_BROKER_URL for Celery "
                "(a plain redis:// URL or kombu's sentinel:// form)"
            )
        INFERIA_BROKER_URL = REDIS_URL
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = INFERIA_BROKER_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
    CACHE_DESCRIPTION = "redis"
    BROKER_DESCRIPTION = INFERIA_BROKER_URL.partition(":")[0]
else:
    # Shared by every process (unlike locmem), so limits and throttles hold.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "inferia_cache",
        }
    }
    BROKER_DIR = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Exchange bindings (fanout, remote control); kombu's default is ./control.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    CACHE_DESCRIPTION = "database"
    BROKER_DESCRIPTION = f"filesystem ({BROKER_DIR})"

CELERY_BROKER_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS | env.json(
    "INFERIA_BROKER_TRANSPORT_OPTIONS", default={}
)
CELERY_TASK_ALWAYS_EAGER = env.bool("INFERIA_CELERY_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"

# --- Auth ---------------------------------------------------------------------
AUTH_USER_MODEL = "orgs.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row
LOGIN_URL = "/admin/login/"

INFERIA_ACCESS_TOKEN_SECONDS = env.int("INFERIA_ACCESS_TOKEN_SECONDS", default=15 * 60)
INFERIA_REFRESH_TOKEN_SECONDS = env.int("INFERIA_REFRESH_TOKEN_SECONDS", default=7 * 24 * 3600)
# Absolute lifetime of a login (API refresh family or dashboard/admin session), counted
# from the password, however often it is refreshed (NIST SP 800-63B AAL2: 12 hours).
INFERIA_SESSION_ABSOLUTE_HOURS = env.int("INFERIA_SESSION_ABSOLUTE_HOURS", default=12)
if INFERIA_SESSION_ABSOLUTE_HOURS < 1:
    raise ImproperlyConfigured("INFERIA_SESSION_ABSOLUTE_HOURS must be at least 1")
INFERIA_JWT_ISSUER = env.str("INFERIA_JWT_ISSUER", default="inferia")
INFERIA_JWT_AUDIENCE = env.str("INFERIA_JWT_AUDIENCE", default="inferia-api")
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=INFERIA_ACCESS_TOKEN_SECONDS),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=INFERIA_REFRESH_TOKEN_SECONDS),
    "ALGORITHM": "HS256",
    "SIGNING_KEY": INFERIA_JWT_SIGNING_KEY,
    "ISSUER": INFERIA_JWT_ISSUER,
    "AUDIENCE": INFERIA_JWT_AUDIENCE,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
    "TOKEN_TYPE_CLAIM": "typ",
    "JTI_CLAIM": "jti",
    "UPDATE_LAST_LOGIN": False,
    "LEEWAY": 0,
}

# Login throttle: failed attempts per window, per username and per client IP.
INFERIA_LOGIN_WINDOW_SECONDS = env.int("INFERIA_LOGIN_WINDOW_SECONDS", default=15 * 60)
INFERIA_LOGIN_MAX_FAILURES_PER_USER = env.int("INFERIA_LOGIN_MAX_FAILURES_PER_USER", default=5)
INFERIA_LOGIN_MAX_FAILURES_PER_IP = env.int("INFERIA_LOGIN_MAX_FAILURES_PER_IP", default=30)
# 2FA: wrong codes in a row before the device locks for INFERIA_OTP_LOCKOUT_SECONDS.
INFERIA_OTP_MAX_FAILURES = env.int("INFERIA_OTP_MAX_FAILURES", default=5)
INFERIA_OTP_LOCKOUT_SECONDS = env.int("INFERIA_OTP_LOCKOUT_SECONDS", default=300)
INFERIA_OTP_ISSUER = env.str("INFERIA_OTP_ISSUER", default="Inferia")
INFERIA_INVITATION_DAYS = env.int("INFERIA_INVITATION_DAYS", default=7)
# OAuth 2.0 device authorization grant (RFC 8628, docs/cli.md): the public clients that
# may ask ("client_id=Display name", comma-separated), how long a device code lives, the
# polling interval, and the wrong user codes a signed-in person (and an IP) may enter per
# INFERIA_LOGIN_WINDOW_SECONDS; unauthenticated code requests per IP in the same window.
INFERIA_DEVICE_CLIENTS = env.dict("INFERIA_DEVICE_CLIENTS", default={"inferia-cli": "Inferia CLI"})
INFERIA_DEVICE_CODE_SECONDS = env.int("INFERIA_DEVICE_CODE_SECONDS", default=600)
INFERIA_DEVICE_POLL_SECONDS = env.int("INFERIA_DEVICE_POLL_SECONDS", default=5)
INFERIA_DEVICE_MAX_FAILURES_PER_USER = env.int("INFERIA_DEVICE_MAX_FAILURES_PER_USER", default=10)
INFERIA_DEVICE_MAX_FAILURES_PER_IP = env.int("INFERIA_DEVICE_MAX_FAILURES_PER_IP", default=30)
INFERIA_DEVICE_MAX_CODES_PER_IP = env.int("INFERIA_DEVICE_MAX_CODES_PER_IP", default=30)
if INFERIA_DEVICE_CODE_SECONDS < 60 or INFERIA_DEVICE_POLL_SECONDS < 1:
    raise ImproperlyConfigured(
        "INFERIA_DEVICE_CODE_SECONDS must be at least 60 and INFERIA_DEVICE_POLL_SECONDS at least 1"
    )
# Absolute links in e-mails (invitations). When set, always this (a deployment behind a
# proxy). Unset: the host and port of the request that caused the mail (validated
# against ALLOWED_HOSTS), and for mails without a request the port `make run` /
# `manage.py serve` was started on ($PORT, which serve hands to its worker and beat).
INFERIA_PUBLIC_URL = env.str("INFERIA_PUBLIC_URL", default="").rstrip("/")
INFERIA_LOCAL_URL = f"http://127.0.0.1:{env.int('PORT', default=8000)}"
INFERIA_TRUSTED_PROXIES = env.list("INFERIA_TRUSTED_PROXIES", default=[])
# Secret references (env:, file:, aws-ssm:, aws-sm:, gcp-sm:, azure-kv:, vault:) resolve
# only under these prefixes of their canonical form (README "Secret managers").
INFERIA_SECRET_REF_ALLOWLIST = env.list("INFERIA_SECRET_REF_ALLOWLIST", default=[])
# Secret-manager values are cached per process for this long; a failure for
# INFERIA_SECRET_REF_FAILURE_SECONDS; when the manager is unreachable, a value
# fetched before is served for at most INFERIA_SECRET_REF_STALE_SECONDS past its TTL.
INFERIA_SECRET_REF_TTL_SECONDS = env.int("INFERIA_SECRET_REF_TTL_SECONDS", default=300)
INFERIA_SECRET_REF_FAILURE_SECONDS = env.int("INFERIA_SECRET_REF_FAILURE_SECONDS", default=5)
INFERIA_SECRET_REF_STALE_SECONDS = env.int("INFERIA_SECRET_REF_STALE_SECONDS", default=600)
INFERIA_SECRET_REF_TIMEOUT_SECONDS = env.float("INFERIA_SECRET_REF_TIMEOUT_SECONDS", default=5.0)
# The managers' endpoints and credentials are the operator's (never a tenant's).
# AWS: boto3's own chain (AWS_REGION, AWS_ACCESS_KEY_ID, profiles, instance roles);
# an endpoint override for both SSM and Secrets Manager (VPC endpoint, test server).
INFERIA_AWS_ENDPOINT_URL = env.str("INFERIA_AWS_ENDPOINT_URL", default="")
# Google: Application Default Credentials; an endpoint override; "anonymous"
# credentials only for a local emulator.
INFERIA_GCP_SECRET_MANAGER_ENDPOINT = env.str("INFERIA_GCP_SECRET_MANAGER_ENDPOINT", default="")
INFERIA_GCP_CREDENTIALS = env.str("INFERIA_GCP_CREDENTIALS", default="default")
if INFERIA_GCP_CREDENTIALS not in ("default", "anonymous"):
    raise ImproperlyConfigured("INFERIA_GCP_CREDENTIALS must be 'default' or 'anonymous'")
# Azure: DefaultAzureCredential (AZURE_TENANT_ID, AZURE_CLIENT_ID, ..., managed
# identity); the vault URL for azure-kv:<vault>/<name>, and an optional CA bundle.
INFERIA_AZURE_KEYVAULT_URL = env.str(
    "INFERIA_AZURE_KEYVAULT_URL", default="https://{vault}.vault.azure.net"
)
if "{vault}" not in INFERIA_AZURE_KEYVAULT_URL:
    raise ImproperlyConfigured("INFERIA_AZURE_KEYVAULT_URL must contain {vault}")
INFERIA_AZURE_KEYVAULT_CA_BUNDLE = env.str("INFERIA_AZURE_KEYVAULT_CA_BUNDLE", default="")
# Off only for a private endpoint or an emulator whose host is not under the
# resource domain named in Key Vault's authentication challenge.
INFERIA_AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE = env.bool(
    "INFERIA_AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE", default=True
)
# HashiCorp Vault (KV v2): address, token (or VAULT_TOKEN_FILE), namespace, CA bundle.
VAULT_ADDR = env.str("VAULT_ADDR", default="")
VAULT_TOKEN = _env_secret("VAULT_TOKEN") or ""
VAULT_NAMESPACE = env.str("VAULT_NAMESPACE", default="")
VAULT_CACERT = env.str("VAULT_CACERT", default="")
# Which private hosts orgs may list in allowed_private_hosts: "*" (any), host,
# host:port or a CIDR; link-local and metadata addresses are refused regardless.
INFERIA_PRIVATE_HOSTS_ALLOWED = env.list("INFERIA_PRIVATE_HOSTS_ALLOWED", default=["*"])
INFERIA_MAX_BODY_BYTES = env.int("INFERIA_MAX_BODY_BYTES", default=10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = INFERIA_MAX_BODY_BYTES

# --- Knowledge bases: documents (knowledge/parsing.py, knowledge/documents.py) ------
# The largest file one upload may carry (413 above it; the document upload path's body
# limit is this plus room for the multipart envelope, other paths keep the one above).
INFERIA_KB_MAX_FILE_BYTES = env.int("INFERIA_KB_MAX_FILE_BYTES", default=20 * 1024 * 1024)
# The most pages a PDF may have (refused at upload above it).
INFERIA_KB_MAX_PDF_PAGES = env.int("INFERIA_KB_MAX_PDF_PAGES", default=500)
# What an org's documents may take in total (uploaded bytes of ready and pending ones).
INFERIA_KB_MAX_ORG_BYTES = env.int("INFERIA_KB_MAX_ORG_BYTES", default=1024 * 1024 * 1024)
# The most text one document may yield once parsed: a small file that extracts to more
# (a decompression bomb in a PDF, say) fails instead of filling memory.
INFERIA_KB_MAX_TEXT_CHARS = env.int("INFERIA_KB_MAX_TEXT_CHARS", default=5_000_000)
# Chunks per embedding call at ingestion (each call also stays within the org's
# max_prompt_chars, which the gateway enforces).
INFERIA_KB_EMBED_BATCH = env.int("INFERIA_KB_EMBED_BATCH", default=64)
for _name in (
    "INFERIA_KB_MAX_FILE_BYTES",
    "INFERIA_KB_MAX_PDF_PAGES",
    "INFERIA_KB_MAX_ORG_BYTES",
    "INFERIA_KB_MAX_TEXT_CHARS",
    "INFERIA_KB_EMBED_BATCH",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be a positive integer")

# --- Gateway ---------------------------------------------------------------------
INFERIA_GATEWAY_MAX_PROMPT_CHARS = env.int("INFERIA_GATEWAY_MAX_PROMPT_CHARS", default=10_000)
INFERIA_GATEWAY_DEFAULT_MAX_TOKENS = env.int("INFERIA_GATEWAY_DEFAULT_MAX_TOKENS", default=1024)
# The most a request may ask for: max_tokens / max_completion_tokens, and n / best_of.
INFERIA_GATEWAY_MAX_TOKENS_CAP = env.int("INFERIA_GATEWAY_MAX_TOKENS_CAP", default=131_072)
INFERIA_GATEWAY_MAX_CHOICES = env.int("INFERIA_GATEWAY_MAX_CHOICES", default=16)
INFERIA_GATEWAY_DEFAULT_KEY_RPM = env.int("INFERIA_GATEWAY_DEFAULT_KEY_RPM", default=600)
INFERIA_GATEWAY_DEFAULT_KEY_TPM = env.int("INFERIA_GATEWAY_DEFAULT_KEY_TPM", default=1_000_000)
INFERIA_GATEWAY_CONNECT_TIMEOUT = env.float("INFERIA_GATEWAY_CONNECT_TIMEOUT", default=5.0)
INFERIA_GATEWAY_READ_TIMEOUT = env.float("INFERIA_GATEWAY_READ_TIMEOUT", default=120.0)
# An upstream answer (or one server-sent event line) larger than this is 502, unread.
INFERIA_GATEWAY_MAX_UPSTREAM_BYTES = env.int(
    "INFERIA_GATEWAY_MAX_UPSTREAM_BYTES", default=10 * 1024 * 1024
)
INFERIA_GATEWAY_CACHE_SECONDS = env.int("INFERIA_GATEWAY_CACHE_SECONDS", default=60)
INFERIA_GATEWAY_CACHE_SIZE = env.int("INFERIA_GATEWAY_CACHE_SIZE", default=10_000)
# How long past its lifetime a cached principal stands in while the database is down.
INFERIA_GATEWAY_CACHE_STALE_SECONDS = env.int("INFERIA_GATEWAY_CACHE_STALE_SECONDS", default=600)
# Gateway requests refused before a caller is known (no or bad credential), per client address.
INFERIA_GATEWAY_ANONYMOUS_RPM = env.int("INFERIA_GATEWAY_ANONYMOUS_RPM", default=300)
INFERIA_GATEWAY_REDIS_TIMEOUT = env.float("INFERIA_GATEWAY_REDIS_TIMEOUT", default=1.0)
INFERIA_GATEWAY_SECRET_CACHE_SECONDS = env.int("INFERIA_GATEWAY_SECRET_CACHE_SECONDS", default=300)

# --- Metrics (docs/metrics.md) -----------------------------------------------------
# Prometheus series recorded by every process; off: nothing is recorded, /metrics is 404.
INFERIA_METRICS_ENABLED = env.bool("INFERIA_METRICS_ENABLED", default=True)
# The operator's scrape token (`Authorization: Bearer <token>` on /metrics: every
# series); unset, only org-scoped scrapes with an API key or access token work.
INFERIA_METRICS_TOKEN = _env_secret("INFERIA_METRICS_TOKEN") or ""
if INFERIA_METRICS_TOKEN and len(INFERIA_METRICS_TOKEN) < 24:
    raise ImproperlyConfigured("INFERIA_METRICS_TOKEN must have at least 24 characters")
# prometheus_client's multiprocess mode: each process (uvicorn workers, Celery) writes
# its series there and /metrics sums them. `manage.py serve` sets it for its children
# (INFERIA_METRICS_DIR, emptied at start) when the operator did not; without it a
# process keeps its series in memory (tests, a single process).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
INFERIA_METRICS_DIR = Path(env.str("INFERIA_METRICS_DIR", default=str(VAR_DIR / "prometheus")))

# --- Traces: OpenTelemetry over OTLP/HTTP (inferia/tracing.py, docs/tracing.md) -----
# The standard OTel variables: on when an endpoint is set (the traces one as is, else
# the general one plus /v1/traces). The SDK reads the rest itself (headers, sampler,
# batch sizes, resource attributes).
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="") or "inferia"
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default="")
if not OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default=""):
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = (
        env.str("OTEL_EXPORTER_OTLP_ENDPOINT").rstrip("/") + "/v1/traces"
    )
_OTEL_TRACES_EXPORTER = env.str("OTEL_TRACES_EXPORTER", default="").strip().lower() or "otlp"
if env.bool("OTEL_SDK_DISABLED", default=False) or _OTEL_TRACES_EXPORTER == "none":
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = ""
if OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:
    if not OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.startswith(("http://", "https://")):
        raise ImproperlyConfigured("OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT must be an http(s) URL")
    if _OTEL_TRACES_EXPORTER != "otlp":
        raise ImproperlyConfigured("OTEL_TRACES_EXPORTER: only 'otlp' (or 'none') is supported")
    for _name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        if env.str(_name, default="").strip() not in ("", "http/protobuf"):
            raise ImproperlyConfigured(f"{_name}: only 'http/protobuf' is supported")

# --- Deployments: launchers (docs/deployments-launchers.md) -------------------------
# The launcher kinds a deployment's `launcher` spec may name. "local" starts a process
# on this server per deployment (the repository's fake upstream: demos and tests), so
# only embedded and debug runs (`make run`, the test suite) enable it by default, and
# the production profile refuses it: a production server never spawns processes on a
# tenant's request. "kubernetes" renders a vLLM Deployment and Service.
_LAUNCHER_KINDS = ("local", "kubernetes")
INFERIA_LAUNCHERS = env.list(
    "INFERIA_LAUNCHERS", default=["kubernetes"] if DEPLOYMENT else list(_LAUNCHER_KINDS)
)
if set(INFERIA_LAUNCHERS) - set(_LAUNCHER_KINDS):
    raise ImproperlyConfigured(f"INFERIA_LAUNCHERS: each one of {', '.join(_LAUNCHER_KINDS)}")
if PRODUCTION and "local" in INFERIA_LAUNCHERS:
    raise ImproperlyConfigured(
        "INFERIA_LAUNCHERS cannot enable 'local' with INFERIA_ENV=production"
    )
# Where launchers keep what they make: the local launcher's logs and process records,
# the Kubernetes launcher's rendered manifests (created with mode 0700).
INFERIA_LAUNCHER_DIR = Path(env.str("INFERIA_LAUNCHER_DIR", default=str(VAR_DIR / "launchers")))
# The local launcher's ports, "LOW-HIGH" (empty: any free port the system gives), and
# how long it waits for a started process to answer HTTP.
INFERIA_LAUNCHER_LOCAL_PORTS = env.str("INFERIA_LAUNCHER_LOCAL_PORTS", default="")
if INFERIA_LAUNCHER_LOCAL_PORTS:
    _low, _sep, _high = INFERIA_LAUNCHER_LOCAL_PORTS.partition("-")
    if not (_low.isdigit() and _high.isdigit() and 1024 <= int(_low) <= int(_high) <= 65535):
        raise ImproperlyConfigured(
            "INFERIA_LAUNCHER_LOCAL_PORTS must be LOW-HIGH within 1024-65535"
        )
INFERIA_LAUNCHER_START_SECONDS = env.float("INFERIA_LAUNCHER_START_SECONDS", default=20.0)
# Kubernetes: manifests are only rendered unless INFERIA_KUBERNETES_APPLY is on and the
# kubectl named here is installed (it uses its own kubeconfig: KUBECONFIG or in-cluster).
INFERIA_KUBERNETES_APPLY = env.bool("INFERIA_KUBERNETES_APPLY", default=False)
INFERIA_KUBECTL = env.str("INFERIA_KUBECTL", default="kubectl")
INFERIA_KUBECTL_TIMEOUT_SECONDS = env.float("INFERIA_KUBECTL_TIMEOUT_SECONDS", default=60.0)
# The namespaces a spec may name (the first is the default). Resource names carry a
# digest of org and deployment, so orgs sharing a namespace never name the same object.
INFERIA_KUBERNETES_NAMESPACES = env.list("INFERIA_KUBERNETES_NAMESPACES", default=["inferia"])
if not INFERIA_KUBERNETES_NAMESPACES:
    raise ImproperlyConfigured("INFERIA_KUBERNETES_NAMESPACES must name at least one namespace")
# The image repositories a spec may name (any tag or digest of them); anything else
# would let a tenant run an arbitrary container in the cluster.
INFERIA_KUBERNETES_IMAGES = env.list("INFERIA_KUBERNETES_IMAGES", default=["vllm/vllm-openai"])
INFERIA_KUBERNETES_CLUSTER_DOMAIN = env.str(
    "INFERIA_KUBERNETES_CLUSTER_DOMAIN", default="cluster.local"
)
# A Secret (in the deployment's namespace, key "token") whose value vLLM gets as
# HF_TOKEN for gated models; the operator's, never named by a tenant's spec.
INFERIA_KUBERNETES_HF_TOKEN_SECRET = env.str("INFERIA_KUBERNETES_HF_TOKEN_SECRET", default="")

# --- E-mail ---------------------------------------------------------------------
EMAIL_URL = env.str("INFERIA_EMAIL_URL", default="")
if EMAIL_URL:
    vars().update(env.email_url("INFERIA_EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
DEFAULT_FROM_EMAIL = env.str("INFERIA_DEFAULT_FROM_EMAIL", default="inferia@localhost")

# --- DRF, OpenAPI --------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["inferia.authentication.BearerAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "inferia.authentication.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "inferia.errors.drf_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "inferia.schema_inputs.InputAwareAutoSchema",
    "DEFAULT_METADATA_CLASS": "inferia.metadata.InputMetadata",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Inferia API",
    "DESCRIPTION": (
        "Organizations, members, roles, 2FA, API keys, provider accounts, model access, "
        "audit and usage (`/api/v1/`), and the OpenAI-compatible gateway (`/api/llm/v1/`). "
        'Every error is `{"error": {"code", "message", "details"}}`; the '
        "reference is in the repository's docs/ folder."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # rate_limit_on_backend_error and quota_on_backend_error share one choice set.
    "ENUM_NAME_OVERRIDES": {"BackendErrorPolicyEnum": ["allow", "deny"]},
    # Per-operation summaries, tags, error responses, security and the gateway's paths.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "inferia.schema.postprocess",
    ],
    "SERVERS": [{"url": "/", "description": "This server"}],
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "tryItOutEnabled": True},
}

# --- Static, i18n ------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Development and tests serve static/ straight from the finders (no collectstatic).
WHITENOISE_USE_FINDERS = not PRODUCTION  # production serves collectstatic output
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security ----------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("INFERIA_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("INFERIA_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_REFERRER_POLICY = "same-origin"
    INFERIA_ADMIN_REQUIRES_OTP = True
else:
    INFERIA_ADMIN_REQUIRES_OTP = env.bool("INFERIA_ADMIN_REQUIRES_OTP", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "audit.logging.RedactingFilter"}},
    "formatters": {
        "json": {"()": "audit.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["redact"],
            "formatter": env.str("INFERIA_LOG_FORMAT", default="json"),
        }
    },
    "root": {"handlers": ["console"], "level": env.str("INFERIA_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.server": {"level": "WARNING"},
        # The secret managers' clients log every request and response at INFO.
        "azure": {"level": "WARNING"},
        "botocore": {"level": "WARNING"},
        "hvac": {"level": "WARNING"},
        "google": {"level": "WARNING"},
        # pysaml2 (sso.saml) logs whole SAML messages (names, e-mails) at DEBUG and INFO.
        "saml2": {"level": "WARNING"},
        "xmlschema": {"level": "WARNING"},
    },
}

CONFIG_SUMMARY = (
    f"inferia: env={INFERIA_ENV} "
    f"database={DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} "
    f"cache={CACHE_DESCRIPTION} broker={BROKER_DESCRIPTION}"
)
if env.bool("INFERIA_PRINT_CONFIG", default=True) and "pytest" not in sys.modules:
    print(CONFIG_SUMMARY, file=sys.stderr)
