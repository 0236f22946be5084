"""Where a login is kept: the OS keyring when ``keyring`` is installed and a backend
works, else a ``0600`` JSON file under the XDG config directory.

Non-secret settings (which server, which org, which store) live in ``config.json``
beside it. A credentials file readable or writable by anyone but its owner is refused,
never read (like ssh with a private key).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KEYRING_SERVICE = "inferia"
STORE_KEYRING, STORE_FILE = "keyring", "file"


class CredentialsError(Exception):
    """The stored login cannot be used (not signed in, unsafe file, keyring failure)."""


class InsecureCredentialsFile(CredentialsError):
    pass


@dataclass
class Credentials:
    """One server's login: the refresh token (the secret that lasts) and the current
    short-lived access token with its local expiry (epoch seconds on this machine)."""

    refresh_token: str
    access_token: str
    access_expires_at: float
    username: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Credentials:
        if not isinstance(data, dict):
            raise CredentialsError("stored credentials are malformed")
        try:
            return cls(
                refresh_token=str(data["refresh_token"]),
                access_token=str(data["access_token"]),
                access_expires_at=float(data["access_expires_at"]),
                username=str(data.get("username", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CredentialsError("stored credentials are malformed") from exc


def config_dir() -> Path:
    """``$INFERIA_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/inferia``, else ``~/.config/inferia``."""
    explicit = os.environ.get("INFERIA_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "inferia"


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _check_private(path: Path) -> None:
    """Refuse a file that others may read or write, or that is not ours. (Windows has
    no such mode bits: there the file lives in the user's profile, guarded by its ACLs.)"""
    if os.name == "nt":
        return
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise InsecureCredentialsFile(f"{path} belongs to another user; refusing to read it")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise InsecureCredentialsFile(
            f"{path} is accessible by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"refusing to read it. Run: chmod 600 {path}"
        )


def write_private_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically, created ``0600`` (never briefly wider)."""
    ensure_private_dir(path.parent)
    # mkstemp creates the file 0600 (O_EXCL): it is never readable by others, even briefly.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_private_json(path: Path) -> Any:
    """The JSON in ``path`` (None when missing); InsecureCredentialsFile when its mode
    lets anyone but the owner in."""
    if not path.exists():
        return None
    _check_private(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CredentialsError(f"{path} is not valid JSON") from exc


class FileStore:
    """Credentials per server in ``credentials.json`` (mode 0600, directory 0700)."""

    kind = STORE_FILE

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or config_dir()) / "credentials.json"

    def _all(self) -> dict[str, Any]:
        data = read_private_json(self.path)
        return data if isinstance(data, dict) else {}

    def load(self, server: str) -> Credentials | None:
        entry = self._all().get(server)
        return Credentials.from_json(entry) if entry is not None else None

    def save(self, server: str, credentials: Credentials) -> None:
        data = self._all()
        data[server] = credentials.to_json()
        write_private_json(self.path, data)

    def delete(self, server: str) -> None:
        data = self._all()
        if data.pop(server, None) is not None:
            write_private_json(self.path, data)


class KeyringStore:
    """Credentials per server in the OS keyring (service ``inferia``, user = server URL)."""

    kind = STORE_KEYRING

    def __init__(self) -> None:
        import keyring

        self._keyring = keyring

    def load(self, server: str) -> Credentials | None:
        try:
            raw = self._keyring.get_password(KEYRING_SERVICE, server)
        except Exception as exc:  # keyring backends raise their own errors
            raise CredentialsError(f"the OS keyring failed: {type(exc).__name__}") from exc
        if raw is None:
            return None
        try:
            return Credentials.from_json(json.loads(raw))
        except ValueError as exc:
            raise CredentialsError("the keyring entry is not valid JSON") from exc

    def save(self, server: str, credentials: Credentials) -> None:
        try:
            self._keyring.set_password(
                KEYRING_SERVICE, server, json.dumps(credentials.to_json(), sort_keys=True)
            )
        except Exception as exc:
            raise CredentialsError(f"the OS keyring failed: {type(exc).__name__}") from exc

    def delete(self, server: str) -> None:
        from keyring.errors import PasswordDeleteError

        try:
            self._keyring.delete_password(KEYRING_SERVICE, server)
        except PasswordDeleteError:
            pass


def keyring_usable() -> bool:
    """``keyring`` is importable and its active backend can store secrets (not the
    "fail" backend nor a chain of none, as on a headless machine without Secret Service)."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return False
    try:
        backend = keyring.get_keyring()
    except Exception:
        return False
    if isinstance(backend, fail.Keyring):
        return False
    chained = getattr(backend, "backends", None)
    if chained is not None and not chained:
        return False
    try:
        return float(getattr(backend, "priority", 0)) > 0
    except Exception:
        return False


Store = FileStore | KeyringStore


def open_store(kind: str | None = None) -> Store:
    """The store named ``kind`` ("keyring" or "file"); None: ``$INFERIA_TOKEN_STORE``,
    else the keyring when usable, else the file."""
    kind = kind or os.environ.get("INFERIA_TOKEN_STORE") or None
    if kind is None:
        kind = STORE_KEYRING if keyring_usable() else STORE_FILE
    if kind == STORE_KEYRING:
        if not keyring_usable():
            raise CredentialsError("the OS keyring is not available here (install `keyring`)")
        return KeyringStore()
    if kind == STORE_FILE:
        return FileStore()
    raise CredentialsError(f"unknown token store {kind!r} (use keyring or file)")


# --- config.json: which server, org and store (no secrets) --------------------------------


@dataclass
class Profile:
    server: str
    org: str = ""
    client_id: str = "inferia-cli"
    store: str = STORE_FILE


def _config_path() -> Path:
    return config_dir() / "config.json"


def load_config() -> dict[str, Any]:
    data = read_private_json(_config_path())
    return data if isinstance(data, dict) else {}


def profile_for(server: str | None = None) -> Profile:
    """The profile of ``server`` (None: ``$INFERIA_SERVER``, else the last login's)."""
    config = load_config()
    server = normalize_server(server or os.environ.get("INFERIA_SERVER") or "") or config.get(
        "default_server", ""
    )
    if not server:
        raise CredentialsError("not signed in: run `inferia login --server URL`")
    entry = config.get("servers", {}).get(server)
    if not isinstance(entry, dict):
        raise CredentialsError(f"not signed in to {server}: run `inferia login --server {server}`")
    return Profile(
        server=server,
        org=str(entry.get("org", "")),
        client_id=str(entry.get("client_id", "inferia-cli")),
        store=str(entry.get("store", STORE_FILE)),
    )


def profile_save(profile: Profile) -> None:
    config = load_config()
    config.setdefault("servers", {})[profile.server] = {
        "org": profile.org,
        "client_id": profile.client_id,
        "store": profile.store,
    }
    config["default_server"] = profile.server
    write_private_json(_config_path(), config)


def profile_delete(server: str) -> None:
    config = load_config()
    config.get("servers", {}).pop(server, None)
    if config.get("default_server") == server:
        config.pop("default_server", None)
    write_private_json(_config_path(), config)


def normalize_server(url: str) -> str:
    return url.strip().rstrip("/")
