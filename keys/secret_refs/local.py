"""``env:NAME`` and ``file:/path``: secrets the operator put on the server."""

from __future__ import annotations

import os
import re
from pathlib import Path

from keys.secret_refs.base import Failure, SecretRefError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvBackend:
    scheme = "env"
    syntax = "env:NAME"
    requires: tuple[str, ...] = ()
    cached = False

    def canonical(self, name: str) -> str:
        if not _ENV_NAME.fullmatch(name):
            raise ValueError("An environment variable name: letters, digits and _.")
        return name

    def resolve(self, name: str) -> str:
        value = os.environ.get(name)
        if not value:
            raise SecretRefError(
                self.scheme, Failure.NOT_FOUND, f"environment variable {name} is not set"
            )
        return value


class FileBackend:
    scheme = "file"
    syntax = "file:/absolute/path"
    requires: tuple[str, ...] = ()
    cached = False

    def canonical(self, name: str) -> str:
        if not name.startswith("/"):
            raise ValueError("An absolute path.")
        # Resolve .. and symlinks before the prefix check.
        return os.path.realpath(name)

    def resolve(self, name: str) -> str:
        path = Path(name)
        try:
            return path.read_text().strip()
        except FileNotFoundError as exc:
            raise SecretRefError(
                self.scheme, Failure.NOT_FOUND, f"secret file {name} cannot be read"
            ) from exc
        except OSError as exc:
            raise SecretRefError(
                self.scheme, Failure.ACCESS_DENIED, f"secret file {name} cannot be read"
            ) from exc
