"""Schemathesis against /api/schema/ on a live server, as an Owner (JWT) of a seeded org.

Every REST operation (``/api/v1/``) gets generated requests; none may answer 5xx, a
status the schema does not list, or a body that breaks the schema. The gateway's
operations are left out here: they need an upstream and are covered by tests/gateway/.

Bounded: ``INFERIA_SCHEMATHESIS_EXAMPLES`` examples per operation (3 by default, for
``make test``; ``.ci/run`` runs this module again with more), no Hypothesis database.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from orgs.services import auth, tenancy
from tests.conftest import make_user

pytestmark = pytest.mark.schemathesis

EXAMPLES = int(os.environ.get("INFERIA_SCHEMATHESIS_EXAMPLES", "3"))
# The coverage phase (boundary values, missing fields, undocumented methods) runs in CI
# (INFERIA_SCHEMATHESIS_COVERAGE=1); make test runs the quicker fuzzing phase only.
COVERAGE = os.environ.get("INFERIA_SCHEMATHESIS_COVERAGE") == "1"
CONFIG = {
    "phases": {
        # Undocumented methods are probed too, OPTIONS included.
        "coverage": {"enabled": COVERAGE},
    },
}
ORG = "acme"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture
def owner_token(transactional_db) -> str:
    """A fresh Owner of ``acme`` (each operation's test starts on a flushed database)."""
    owner = make_user("olive")
    tenancy.organization_create(user=owner, slug=ORG, name="Acme")
    return auth.token_pair_issue(user=owner).access_token


@pytest.fixture
def api_schema(live_server, owner_token):
    return schemathesis.openapi.from_url(
        f"{live_server.url}/api/schema/?format=json",
        config=schemathesis.Config.from_dict(CONFIG),
    )


# The gateway (/api/llm/) is not served by this WSGI live server; tests/gateway/ cover it.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex="^/api/llm/")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_within_its_schema(case, live_server, owner_token):
    if "org" in (case.path_parameters or {}):
        case.path_parameters["org"] = ORG  # the seeded org; other slugs only reach 404
    case.call_and_validate(
        base_url=live_server.url,
        headers={"Authorization": f"Bearer {owner_token}"},
        checks=CHECKS,
    )
