"""One typed OrgPolicy: every knob, its type and its default in one place."""

from __future__ import annotations

import dataclasses

import pytest

from orgs import forms
from orgs.api.serializers import OrgSettingsInput
from orgs.policy import OrgPolicy


def test_api_validation_and_policy_list_the_same_knobs():
    assert set(OrgSettingsInput().fields) == OrgPolicy.knob_names()


def test_dashboard_form_edits_only_policy_knobs():
    assert set(forms.SettingsForm.SETTING_FIELDS) <= OrgPolicy.knob_names()


def test_unset_and_null_knobs_take_the_defaults():
    assert OrgPolicy.from_settings({}) == OrgPolicy()
    assert OrgPolicy.from_settings({"audit_retention_days": None}).audit_retention_days == 365
    assert OrgPolicy().rate_limit_on_backend_error == "deny"


def test_stored_values_are_typed():
    policy = OrgPolicy.from_settings(
        {
            "allowed_private_hosts": ["127.0.0.1:9000"],
            "monthly_cost_quota": 2,
            "unused_key_days": "12",
            "payload_logging": True,
            "an_old_knob": 1,
        }
    )
    assert policy.allowed_private_hosts == ("127.0.0.1:9000",)
    assert policy.monthly_cost_quota == 2.0 and isinstance(policy.monthly_cost_quota, float)
    assert policy.unused_key_days == 12
    assert policy.payload_logging is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.unused_key_days = 1  # type: ignore[misc]


def test_settings_saved_through_the_api_are_read_through_the_policy(cast, alice_client):
    response = alice_client.patch(
        "/api/v1/orgs/acme",
        {"settings": {"max_key_lifetime_days": 7, "alert_denials": 3}},
        format="json",
    )
    assert response.status_code == 200, response.content
    cast.acme.refresh_from_db()
    assert cast.acme.policy.max_key_lifetime_days == 7
    assert cast.acme.policy.alert_denials == 3
    assert cast.acme.policy.alert_failed_logins == 20
