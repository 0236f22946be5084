"""Every state change of orgs/: one function per use case.

``tenancy`` (organizations, members, roles, teams, invitations), ``auth``
(login, tokens, passwords) and ``two_factor`` (TOTP devices, recovery codes).
"""
