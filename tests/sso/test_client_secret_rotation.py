"""manage.py rotate_master_key re-wraps the OIDC client secrets too: after a rotation
the old master key can leave the ring and the secret still decrypts."""

from __future__ import annotations

import base64
import io

from django.core.management import call_command

from sso.models import IdentityProvider
from sso.protocols import client_secret_plaintext
from tests.sso.conftest import make_oidc

K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(100, 132))).decode()


def test_rotation_rewraps_the_client_secret(cast, settings):
    settings.INFERIA_MASTER_KEYS = f"k1:{K1}"
    provider = make_oidc(cast)
    settings.INFERIA_MASTER_KEYS = f"k2:{K2},k1:{K1}"
    out = io.StringIO()
    call_command("rotate_master_key", stdout=out)
    assert "1 SSO client secrets" in out.getvalue()
    settings.INFERIA_MASTER_KEYS = f"k2:{K2}"
    row = IdentityProvider.all_orgs.get(pk=provider.pk)
    assert client_secret_plaintext(row) == "client-secret-plaintext-123"
