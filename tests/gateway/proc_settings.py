"""Settings of a gateway started as a separate process by a test.

The test settings, pointed at the database the test process is using (its name
comes from ``INFERIA_TEST_DB_NAME``: the SQLite file or the PostgreSQL test
database pytest-django created), so both processes see the same rows.
"""

import os

from inferia.test_settings import *  # noqa: F403

DATABASES["default"]["NAME"] = os.environ["INFERIA_TEST_DB_NAME"]  # noqa: F405
