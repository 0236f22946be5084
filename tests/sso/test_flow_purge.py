"""The beat job that deletes expired sign-in flows (they hold encrypted claims)."""

from __future__ import annotations

from orgs.scoping import org_scope
from sso import services
from sso.models import FlowPurpose, SsoFlow
from tests.sso.conftest import owner_access, self_signed_pem


def _saml_provider(cast):
    with org_scope(cast.acme):
        return services.identity_provider_create(
            access=owner_access(cast.acme, cast.alice),
            name="corp-saml",
            kind="saml",
            idp_entity_id="https://idp.example.com/saml2",
            sso_url="https://idp.example.com/sso",
            signing_certificates=[self_signed_pem()],
        )


def _start(cast, provider) -> SsoFlow:
    _url, flow = services.flow_start(
        org=cast.acme,
        provider=provider,
        purpose=FlowPurpose.DASHBOARD,
        base_url="https://inferia.example.com",
    )
    return flow


def test_beat_purges_expired_flows_of_every_org_and_keeps_live_ones(cast, clock_shift):
    from inferia.celery import app
    from sso import tasks

    provider = _saml_provider(cast)
    old = _start(cast, provider)
    clock_shift(services.FLOW_SECONDS + 1)
    live = _start(cast, provider)

    assert tasks.sso_flow_purge.apply().get() == 1
    assert list(SsoFlow.all_orgs.values_list("pk", flat=True)) == [live.pk]
    assert old.pk != live.pk
    assert tasks.sso_flow_purge.apply().get() == 0  # safe to run twice

    # Scheduled by beat, under the name the worker registers.
    app.loader.import_default_modules()
    entry = app.conf.beat_schedule["sso-flow-purge"]
    assert entry["task"] == tasks.sso_flow_purge.name
    assert entry["task"] in app.tasks
