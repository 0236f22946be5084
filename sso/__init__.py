"""Single sign-on: per-organization identity providers (OIDC, SAML), verified
e-mail domains, group mapping rules and the sign-in service (issue 13)."""
