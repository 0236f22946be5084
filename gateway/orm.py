"""ORM calls from the gateway's event loop, with Django's connection housekeeping.

The gateway is not a Django request, so nothing closes connections at its end:
each call closes obsolete ones before and after (``CONN_MAX_AGE``), as Django
does at the start and end of a request.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections


def orm(function, *, thread_sensitive: bool = True):
    def run(*args, **kwargs):
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=thread_sensitive)
