from __future__ import annotations

import pytest
from django.test import Client

from tests.gateway.conftest import (  # noqa: F401
    _fresh_gateway_state,
    fake_upstream,
    gateway_server,
    llm,
    on_redis,
    redis_outage,
    upstream_requests,
)


def page_client(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


@pytest.fixture
def alice_page(cast) -> Client:
    return page_client(cast.alice)


@pytest.fixture
def bob_page(cast) -> Client:
    return page_client(cast.bob)


@pytest.fixture
def vera_page(cast) -> Client:
    return page_client(cast.vera)


@pytest.fixture
def dave_page(cast) -> Client:
    return page_client(cast.dave)


@pytest.fixture
def charlie_page(cast) -> Client:
    return page_client(cast.charlie)
