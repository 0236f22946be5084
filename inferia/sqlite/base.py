"""Django's SQLite backend on the driver ``inferia.sqlite`` picks, with sqlite-vec loaded
into every new connection."""

from __future__ import annotations

# isort: off
from inferia import sqlite as driver  # must precede Django's backend: it swaps the driver
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper

# isort: on


class DatabaseWrapper(SQLiteDatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        driver.load_extensions(connection)
        return connection
