"""``gcp-sm:projects/<p>/secrets/<s>/versions/<v|latest>``: Google Secret Manager
through the official client (REST transport).

Credentials are Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
workload identity, the metadata server); ``INFERIA_GCP_SECRET_MANAGER_ENDPOINT``
overrides the endpoint and ``INFERIA_GCP_CREDENTIALS=anonymous`` is for emulators.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.conf import settings

from keys.secret_refs.base import Failure, SecretRefError

_REF = re.compile(
    r"projects/(?:[a-z][a-z0-9\-]{4,28}[a-z0-9]|[0-9]{1,20})"
    r"/secrets/[A-Za-z0-9_\-]{1,255}"
    r"/versions/(?:latest|[1-9][0-9]{0,18})"
)


@functools.lru_cache(maxsize=4)
def _client(endpoint: str, credentials_mode: str) -> Any:
    from google.cloud import secretmanager

    credentials = None
    if credentials_mode == "anonymous":
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    return secretmanager.SecretManagerServiceClient(
        transport="rest",
        credentials=credentials,
        client_options={"api_endpoint": endpoint} if endpoint else None,
    )


def clear_clients() -> None:
    _client.cache_clear()


class GcpSecretManagerBackend:
    scheme = "gcp-sm"
    syntax = "gcp-sm:projects/<project>/secrets/<secret>/versions/<version|latest>"
    requires: tuple[str, ...] = ("google.cloud.secretmanager",)
    cached = True

    def canonical(self, name: str) -> str:
        if not _REF.fullmatch(name):
            raise ValueError("projects/<project>/secrets/<secret>/versions/<number or latest>.")
        return name

    def resolve(self, name: str) -> str:
        try:
            import google.auth.exceptions as auth_errors
            import requests
            from google.api_core import exceptions as errors
        except ImportError as exc:
            raise SecretRefError(
                self.scheme, Failure.NOT_CONFIGURED, "google-cloud-secret-manager is not installed"
            ) from exc
        try:
            client = _client(
                settings.INFERIA_GCP_SECRET_MANAGER_ENDPOINT, settings.INFERIA_GCP_CREDENTIALS
            )
            answer = client.access_secret_version(
                name=name, retry=None, timeout=settings.INFERIA_SECRET_REF_TIMEOUT_SECONDS
            )
        except (errors.NotFound, errors.FailedPrecondition):
            # FailedPrecondition: the version is disabled or destroyed.
            raise SecretRefError(self.scheme, Failure.NOT_FOUND) from None
        except (errors.PermissionDenied, errors.Unauthenticated, errors.Forbidden):
            raise SecretRefError(self.scheme, Failure.ACCESS_DENIED) from None
        except (
            errors.ServiceUnavailable,
            errors.DeadlineExceeded,
            errors.InternalServerError,
            errors.GatewayTimeout,
            errors.TooManyRequests,
            errors.RetryError,
        ):
            raise SecretRefError(self.scheme, Failure.UNREACHABLE) from None
        except errors.GoogleAPIError:
            raise SecretRefError(self.scheme, Failure.REFUSED) from None
        except auth_errors.DefaultCredentialsError:
            raise SecretRefError(
                self.scheme, Failure.NOT_CONFIGURED, "no Google credentials"
            ) from None
        except (auth_errors.TransportError, requests.RequestException):
            raise SecretRefError(self.scheme, Failure.UNREACHABLE) from None
        try:
            value = bytes(answer.payload.data).decode()
        except UnicodeDecodeError:
            value = ""
        if not value:
            raise SecretRefError(self.scheme, Failure.INVALID_VALUE)
        return value
