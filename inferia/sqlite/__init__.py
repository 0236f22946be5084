"""The embedded default's database driver: SQLite with the sqlite-vec extension.

Knowledge bases (``knowledge.vectors``) search vectors with sqlite-vec's distance
functions. The standard library's ``sqlite3`` may be built without extension loading
(pyenv's and some distributions' Pythons are), so when ``pysqlite3`` (the same DB-API
module, compiled with a recent SQLite that loads extensions) is installed it stands
in for ``sqlite3`` everywhere in the process. That happens before Django's SQLite
backend is imported: ``inferia.sqlite.base`` imports this module first, and
settings name that backend.

``VEC_ERROR`` says why vectors are unavailable (None when they are), for the one
place that needs them to say so.
"""

from __future__ import annotations

import sys

try:  # pragma: no branch - which driver depends on the platform
    import pysqlite3  # type: ignore[import-untyped]
    import pysqlite3.dbapi2  # type: ignore[import-untyped]
except ImportError:  # not Linux: the standard library's, which may not load extensions
    DRIVER = "sqlite3"
else:
    sys.modules["sqlite3"] = pysqlite3
    sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2
    DRIVER = "pysqlite3"

VEC_ERROR: str | None = None


def load_extensions(connection) -> None:
    """Load sqlite-vec into a new DB-API connection (then close extension loading again,
    so SQL can never load a library of its own choosing)."""
    global VEC_ERROR
    try:
        import sqlite_vec  # type: ignore[import-untyped]

        connection.enable_load_extension(True)
        try:
            sqlite_vec.load(connection)
        finally:
            connection.enable_load_extension(False)
    except (AttributeError, ImportError, OSError, Exception) as exc:  # noqa: BLE001
        VEC_ERROR = f"sqlite-vec could not be loaded with the {DRIVER} driver: {exc}"
    else:
        VEC_ERROR = None
