"""``vault:<mount>/<path>#<key>``: HashiCorp Vault KV version 2 through hvac.

The server and token are the operator's: ``VAULT_ADDR``, ``VAULT_TOKEN`` (or
``VAULT_TOKEN_FILE``), optional ``VAULT_NAMESPACE`` and ``VAULT_CACERT``.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from keys.secret_refs.base import Failure, SecretRefError, segments_clean

_SEGMENT = r"[A-Za-z0-9_.\-]+"
_REF = re.compile(
    rf"(?P<mount>{_SEGMENT})/(?P<path>{_SEGMENT}(?:/{_SEGMENT})*)#(?P<key>{_SEGMENT})"
)


class VaultBackend:
    scheme = "vault"
    syntax = "vault:<mount>/<path>#<key>"
    requires: tuple[str, ...] = ("hvac",)
    cached = True

    def canonical(self, name: str) -> str:
        match = _REF.fullmatch(name)
        if not match or not segments_clean(f"{match['mount']}/{match['path']}"):
            raise ValueError("A KV v2 mount, a path and the key of the value after #.")
        return name

    def _client(self) -> Any:
        import hvac

        if not settings.VAULT_ADDR or not settings.VAULT_TOKEN:
            raise SecretRefError(
                self.scheme, Failure.NOT_CONFIGURED, "VAULT_ADDR or VAULT_TOKEN unset"
            )
        return hvac.Client(
            url=settings.VAULT_ADDR,
            token=settings.VAULT_TOKEN,
            namespace=settings.VAULT_NAMESPACE or None,
            verify=settings.VAULT_CACERT or True,
            timeout=settings.INFERIA_SECRET_REF_TIMEOUT_SECONDS,
        )

    def resolve(self, name: str) -> str:
        try:
            import hvac.exceptions as errors
            import requests
        except ImportError as exc:
            raise SecretRefError(
                self.scheme, Failure.NOT_CONFIGURED, "hvac is not installed"
            ) from exc
        match = _REF.fullmatch(name)
        if match is None:  # canonical() let it through: cannot happen
            raise SecretRefError(self.scheme, Failure.INVALID_VALUE)
        client = self._client()
        try:
            answer = client.secrets.kv.v2.read_secret_version(
                path=match["path"], mount_point=match["mount"], raise_on_deleted_version=True
            )
        except errors.InvalidPath:
            raise SecretRefError(self.scheme, Failure.NOT_FOUND) from None
        except (errors.Forbidden, errors.Unauthorized):
            raise SecretRefError(self.scheme, Failure.ACCESS_DENIED) from None
        except (errors.VaultDown, errors.InternalServerError, errors.BadGateway):
            raise SecretRefError(self.scheme, Failure.UNREACHABLE) from None
        except errors.VaultError:
            raise SecretRefError(self.scheme, Failure.REFUSED) from None
        except requests.RequestException:
            raise SecretRefError(self.scheme, Failure.UNREACHABLE) from None
        data = answer.get("data", {}).get("data") if isinstance(answer, dict) else None
        value = data.get(match["key"]) if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise SecretRefError(
                self.scheme, Failure.INVALID_VALUE, f"no string at #{match['key']}"
            )
        return value
