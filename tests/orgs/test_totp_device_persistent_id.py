"""django_otp finds our UUID-keyed TOTP devices again from their persistent id
(the admin's OTP login form and OTPMiddleware depend on it)."""

from __future__ import annotations

from django_otp.models import Device

from tests.conftest import client_for, enable_totp


def test_device_round_trips_through_its_persistent_id(cast):
    device, _codes = enable_totp(client_for(cast.alice), cast.alice)
    found = Device.from_persistent_id(device.persistent_id)
    assert found == device
    assert found.user_id == cast.alice.pk
