"""``azure-kv:<vault>/<name>[/<version>]``: Azure Key Vault through azure-keyvault-secrets.

The vault's URL is the operator's template ``INFERIA_AZURE_KEYVAULT_URL``
(default ``https://{vault}.vault.azure.net``; sovereign clouds change the
suffix), so a reference never names a host. Credentials: DefaultAzureCredential
(AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET, workload or managed
identity). Vault and secret names are case-insensitive in Azure, so the
canonical form is lower case.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.conf import settings

from keys.secret_refs.base import Failure, SecretRefError

_REF = re.compile(
    r"(?P<vault>[a-z][a-z0-9\-]{1,22}[a-z0-9])/(?P<name>[a-z0-9\-]{1,127})(?:/(?P<version>[0-9a-f]{32}))?"
)


@functools.lru_cache(maxsize=1)
def _credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@functools.lru_cache(maxsize=32)
def _client(vault_url: str, ca_bundle: str, verify_challenge: bool, timeout: float) -> Any:
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        vault_url,
        _credential(),
        verify_challenge_resource=verify_challenge,
        connection_verify=ca_bundle or True,
        connection_timeout=timeout,
        read_timeout=timeout,
        retry_total=1,
    )


def clear_clients() -> None:
    _client.cache_clear()


class AzureKeyVaultBackend:
    scheme = "azure-kv"
    syntax = "azure-kv:<vault>/<secret name>[/<version>]"
    requires: tuple[str, ...] = ("azure.keyvault.secrets", "azure.identity")
    cached = True

    def canonical(self, name: str) -> str:
        lowered = name.lower()
        if not _REF.fullmatch(lowered):
            raise ValueError("A vault name, a secret name and optionally a 32-hex version.")
        return lowered

    def resolve(self, name: str) -> str:
        try:
            from azure.core import exceptions as errors
        except ImportError as exc:
            raise SecretRefError(
                self.scheme, Failure.NOT_CONFIGURED, "azure-keyvault-secrets is not installed"
            ) from exc
        match = _REF.fullmatch(name)
        if match is None:  # canonical() let it through: cannot happen
            raise SecretRefError(self.scheme, Failure.INVALID_VALUE)
        try:
            client = _client(
                settings.INFERIA_AZURE_KEYVAULT_URL.format(vault=match["vault"]),
                settings.INFERIA_AZURE_KEYVAULT_CA_BUNDLE,
                settings.INFERIA_AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE,
                settings.INFERIA_SECRET_REF_TIMEOUT_SECONDS,
            )
            secret = client.get_secret(match["name"], match["version"] or "")
        except errors.ResourceNotFoundError:
            raise SecretRefError(self.scheme, Failure.NOT_FOUND) from None
        except errors.ClientAuthenticationError as exc:
            # Also CredentialUnavailableError: no Azure identity on this server.
            unavailable = type(exc).__name__ == "CredentialUnavailableError"
            raise SecretRefError(
                self.scheme, Failure.NOT_CONFIGURED if unavailable else Failure.ACCESS_DENIED
            ) from None
        except errors.HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 403:
                raise SecretRefError(self.scheme, Failure.ACCESS_DENIED) from None
            if status == 429 or status >= 500:
                raise SecretRefError(self.scheme, Failure.UNREACHABLE) from None
            raise SecretRefError(self.scheme, Failure.REFUSED, f"HTTP {status}") from None
        except (errors.ServiceRequestError, errors.ServiceResponseError):
            raise SecretRefError(self.scheme, Failure.UNREACHABLE) from None
        except errors.AzureError:
            raise SecretRefError(self.scheme, Failure.REFUSED) from None
        value = secret.value
        if not isinstance(value, str) or not value:
            raise SecretRefError(self.scheme, Failure.INVALID_VALUE)
        return value
