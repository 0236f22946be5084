"""Each REST operation in its own words, for the OpenAPI schema (``inferia.schema``).

Keyed by (method, path) as the schema names them. ``tests/inferia/test_openapi_schema.py``
fails when an operation is missing here or two share a summary or a description.
"""

from __future__ import annotations

# (method, path) -> (summary, description)
OPERATIONS: dict[tuple[str, str], tuple[str, str]] = {
    # --- auth -------------------------------------------------------------------------
    ("POST", "/api/v1/auth/login"): (
        "Log in",
        "Check a username and password (and `otp_code` when the account has 2FA) and "
        "return an access token (default 15 minutes) and a refresh token (default 7 days). "
        "Unknown user and wrong password give the same 401; a right password without a "
        "code for a 2FA account is 401 `OTP_REQUIRED`. Failed attempts are throttled per "
        "username and per client address (429 with `Retry-After`).",
    ),
    ("POST", "/api/v1/auth/refresh"): (
        "Refresh the token pair",
        "Trade a refresh token for a new access and refresh token. The old refresh "
        "token dies (rotation); presenting it again is 401 and ends the whole login.",
    ),
    ("POST", "/api/v1/auth/logout"): (
        "Log out",
        "End the login of this refresh token: the refresh token and every access "
        "token of its login stop working at once (API and gateway).",
    ),
    ("POST", "/api/v1/auth/device/code"): (
        "Start a device sign-in (RFC 8628)",
        "A registered public client (`client_id`, e.g. `inferia-cli`; optional `org` slug) "
        "asks for a `device_code` (kept by the client) and a short `user_code` that a person "
        "enters at `verification_uri` (the dashboard's /device page) to approve or deny. "
        "Form-encoded or JSON. Errors are OAuth's `{error, error_description}` "
        "(`invalid_client`, `invalid_request`), not the envelope; requests per client "
        "address are limited (429 with `Retry-After`, in the envelope).",
    ),
    ("POST", "/api/v1/auth/device/token"): (
        "Poll for the device sign-in's tokens",
        "With `grant_type=urn:ietf:params:oauth:grant-type:device_code`, the `device_code` "
        "and `client_id`: 400 `authorization_pending` until a person answers, `slow_down` "
        "when polled sooner than `interval` (which then grows by 5 s), `access_denied`, "
        "`expired_token`, `invalid_grant` (unknown, other client's, or already used: reuse "
        "ends the sign-in it started); once approved, the approver's access and refresh "
        "tokens (a new login), exactly once.",
    ),
    ("GET", "/api/v1/auth/me"): (
        "Who am I",
        "The signed-in user, each organization they belong to, their role there and "
        "their effective permissions in it. Needs an access token (not an API key).",
    ),
    ("POST", "/api/v1/auth/password"): (
        "Change my password",
        "Change the signed-in user's password given the current one. Every other "
        "token of the user dies; the answer is a fresh token pair for this client.",
    ),
    ("POST", "/api/v1/auth/2fa/setup"): (
        "Start TOTP enrolment",
        "Create an unconfirmed TOTP device and return its `otpauth://` URI and a QR "
        "code (SVG) for Google Authenticator, Authy or any RFC 6238 app.",
    ),
    ("POST", "/api/v1/auth/2fa/confirm"): (
        "Confirm TOTP enrolment",
        "Confirm the device with a current code; 2FA is on from now on. Returns the "
        "recovery codes, shown this once. Other sessions of the user end.",
    ),
    ("POST", "/api/v1/auth/2fa/disable"): (
        "Turn 2FA off",
        "Remove the TOTP device and the recovery codes given a current TOTP code (not a "
        "recovery code). Other sessions of the user end; organizations that require "
        "2FA refuse the user until they enrol again.",
    ),
    ("POST", "/api/v1/auth/2fa/recovery-codes"): (
        "Replace my recovery codes",
        "Given a fresh code, discard the old recovery codes and return new ones, shown once.",
    ),
    ("POST", "/api/v1/invitations/{token}/accept"): (
        "Accept an invitation",
        "Join the inviting organization with the invitation's role. Signed in, the "
        "account's e-mail must be the invited one; otherwise give `username` and "
        "`password` for a new account. An invitation is accepted once (409 after).",
    ),
    # --- organizations ----------------------------------------------------------------
    ("GET", "/api/v1/orgs"): (
        "List my organizations",
        "The organizations the signed-in user is a member of, paginated.",
    ),
    ("POST", "/api/v1/orgs"): (
        "Create an organization",
        "Create an organization; the signed-in creator becomes its Owner. The slug "
        "addresses it in every path (`/api/v1/orgs/{org}/...`).",
    ),
    ("GET", "/api/v1/orgs/{org}"): (
        "Show an organization",
        "The organization with its settings (2FA policy, limits, quotas, private "
        "hosts, retention). Needs `org:view`; another organization is 404.",
    ),
    ("PATCH", "/api/v1/orgs/{org}"): (
        "Change an organization's settings",
        "Change the name, `require_2fa` or any key of `settings` (for example "
        "`allowed_private_hosts` for a self-hosted model server). Needs `org:update`; "
        "unknown settings are 400. The `cache_*` settings need `cache:manage` too.",
    ),
    ("GET", "/api/v1/orgs/{org}/cache"): (
        "Show the response cache",
        "The gateway's response cache of the organization: whether it is on, its TTL, "
        "its size cap and entry limit, and what it holds now (entries, bytes, hits and "
        "misses). `available` is false when the server runs without Redis. Needs `org:view`.",
    ),
    ("PATCH", "/api/v1/orgs/{org}/cache"): (
        "Change the response cache's settings",
        "Turn the cache on or off (`enabled`) and set `ttl_seconds` (1 to 604800), "
        "`max_bytes` (the org's cap, 1 KiB to 1 GiB; the entries that expire first are "
        "evicted) and `max_entry_bytes`; omitted fields stay. Needs `cache:manage` "
        "(`org:update` is not enough); turning it on without Redis is 400. Audited.",
    ),
    ("PUT", "/api/v1/orgs/{org}/cache"): (
        "Replace the response cache's settings",
        "As PATCH, but an omitted field goes back to its default (off, 3600 s, 64 MiB, "
        "1 MiB). Needs `cache:manage`. Audited.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/cache"): (
        "Purge the response cache",
        "Drop every cached answer of the organization, or with `?model=<account/model>` "
        "(or a deployment's FQN) only that model's; answers how many. Other "
        "organizations' entries are never touched. Needs `cache:manage`. Audited.",
    ),
    ("DELETE", "/api/v1/orgs/{org}"): (
        "Delete an organization",
        "Delete the organization and everything it owns. Needs `org:delete` (Owner) "
        "and, for a user with 2FA, a fresh `otp_code` (else the `password`).",
    ),
    ("POST", "/api/v1/orgs/{org}/transfer-ownership"): (
        "Hand ownership to another member",
        "An Owner makes another member Owner and becomes Admin. Needs a signed-in "
        "Owner and a fresh code (or password).",
    ),
    # --- members ----------------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/members"): (
        "List members",
        "The organization's members with their role, paginated. Needs `member:view`.",
    ),
    ("GET", "/api/v1/orgs/{org}/members/{id}"): (
        "Show a member",
        "One membership by id. Needs `member:view`.",
    ),
    ("PATCH", "/api/v1/orgs/{org}/members/{id}"): (
        "Change a member's role",
        "Give a member another role (id or slug). Needs `member:update`, a signed-in "
        "user, and every permission of the new role; Admins cannot touch Owners; the "
        "last Owner cannot be demoted (409).",
    ),
    ("DELETE", "/api/v1/orgs/{org}/members/{id}"): (
        "Remove a member, or leave",
        "Remove a member (`member:delete`) or yourself (anyone). Their personal API "
        "keys in this organization are revoked in the same transaction. The last "
        "Owner cannot leave (409).",
    ),
    # --- roles ------------------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/roles"): (
        "List roles",
        "The built-in roles (Owner, Admin, Member, Viewer) and the organization's "
        "custom roles with their permissions. Needs `member:view`.",
    ),
    ("POST", "/api/v1/orgs/{org}/roles"): (
        "Create a custom role",
        "A named subset of the permission vocabulary. Needs `policy:manage` and every "
        "permission the role holds (bounded delegation); unknown names are 400.",
    ),
    ("GET", "/api/v1/orgs/{org}/roles/{id}"): (
        "Show a role",
        "One role with its permissions and member count. Needs `member:view`.",
    ),
    ("PATCH", "/api/v1/orgs/{org}/roles/{id}"): (
        "Change a custom role",
        "Rename a custom role or change its permissions (a signed-in user holding "
        "them all). Built-in roles cannot change. Needs `policy:manage`.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/roles/{id}"): (
        "Delete a custom role",
        "Delete a custom role nobody holds (409 while in use). Needs `policy:manage`.",
    ),
    # --- teams ------------------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/teams"): (
        "List teams",
        "The organization's teams, paginated. Needs `member:view`.",
    ),
    ("POST", "/api/v1/orgs/{org}/teams"): (
        "Create a team",
        "A group of members that access rules and provider-account grants can name. "
        "Needs `team:manage`.",
    ),
    ("GET", "/api/v1/orgs/{org}/teams/{id}"): (
        "Show a team",
        "One team by id. Needs `member:view`.",
    ),
    ("PATCH", "/api/v1/orgs/{org}/teams/{id}"): (
        "Rename a team",
        "Change a team's name or description. Needs `team:manage`.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/teams/{id}"): (
        "Delete a team",
        "Delete a team; its members stay members of the organization. Needs `team:manage`.",
    ),
    ("GET", "/api/v1/orgs/{org}/teams/{id}/members"): (
        "List a team's members",
        "The members of one team, paginated. Needs `member:view`.",
    ),
    ("POST", "/api/v1/orgs/{org}/teams/{id}/members"): (
        "Add a member to a team",
        "Add an organization member (by user id) to the team. Needs `team:manage` and "
        "a signed-in user, since a team carries grants.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/teams/{id}/members/{user_id}"): (
        "Remove a member from a team",
        "Take a user out of the team (they stay in the organization). Needs `team:manage`.",
    ),
    # --- invitations ------------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/invitations"): (
        "List invitations",
        "Pending, accepted, expired and revoked invitations. Needs `member:view`. "
        "Tokens are never shown.",
    ),
    ("POST", "/api/v1/orgs/{org}/invitations"): (
        "Invite someone by e-mail",
        "Invite an e-mail address with a role. A worker mails the link (to the host "
        "and port this request reached, or `INFERIA_PUBLIC_URL`). Needs `member:invite`, "
        "a signed-in user and every permission of the role; a member or a pending "
        "invitation for the address is 409.",
    ),
    ("GET", "/api/v1/orgs/{org}/invitations/{id}"): (
        "Show an invitation",
        "One invitation and its status. Needs `member:view`.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/invitations/{id}"): (
        "Revoke an invitation",
        "The link stops working; a non-pending invitation is 409. Needs `member:invite`.",
    ),
    ("POST", "/api/v1/orgs/{org}/invitations/{id}/resend"): (
        "Send an invitation again",
        "Mail a new link (the previous one dies) and extend the expiry. Needs `member:invite`.",
    ),
    # --- service accounts -------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/service-accounts"): (
        "List service accounts",
        "Non-human identities of the organization with their role. Needs `member:view`.",
    ),
    ("POST", "/api/v1/orgs/{org}/service-accounts"): (
        "Create a service account",
        "A non-human identity with a role; its keys survive the departure of whoever "
        "made them. Needs `service_account:manage` and every permission of the role.",
    ),
    ("GET", "/api/v1/orgs/{org}/service-accounts/{id}"): (
        "Show a service account",
        "One service account by id. Needs `member:view`.",
    ),
    ("PATCH", "/api/v1/orgs/{org}/service-accounts/{id}"): (
        "Change a service account",
        "Rename, describe, disable or re-role a service account (a new role needs a "
        "signed-in user holding it). Needs `service_account:manage`.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/service-accounts/{id}"): (
        "Delete a service account",
        "Delete the account; its keys are revoked. Needs `service_account:manage`.",
    ),
    # --- API keys ---------------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/api-keys"): (
        "List API keys",
        "Your own keys; with `api_key:view`, every key of the organization. Only the "
        "public prefix is shown, never the secret.",
    ),
    ("POST", "/api/v1/orgs/{org}/api-keys"): (
        "Mint an API key",
        "Create a key with scopes (a subset of yours, aliases accepted), optional "
        "expiry, model list and service account. The answer's `key` is the only time "
        "the secret is ever shown. Needs `api_key:create`.",
    ),
    ("GET", "/api/v1/orgs/{org}/api-keys/{id}"): (
        "Show an API key",
        "One key you own (or any, with `api_key:view`), by id, without its secret.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/api-keys/{id}"): (
        "Revoke an API key",
        "Revoke your key (or another's with `api_key:revoke`); every gateway process "
        "refuses it as soon as this call returns. Answers the revoked key.",
    ),
    ("POST", "/api/v1/orgs/{org}/api-keys/{id}/rotate"): (
        "Rotate an API key",
        "Issue a new secret for the same scopes, models, expiry and limits; the old "
        "secret works for `grace_seconds` more (default 0). Only the key's owner may "
        "rotate a personal key.",
    ),
    # --- single sign-on ----------------------------------------------------------------
    ("POST", "/api/v1/auth/sso/{org}"): (
        "Start an SSO sign-in for a CLI",
        "Give a loopback `redirect_uri` and a PKCE S256 `code_challenge`; get the URL to "
        "open in a browser. The sign-in at the organization's identity provider ends on "
        "the loopback address with a one-time `code`. No credential needed.",
    ),
    ("POST", "/api/v1/auth/sso/token"): (
        "Exchange an SSO code for a token pair",
        "The one-time `code` and the PKCE `code_verifier` give the usual access and "
        "refresh tokens. Single use; a wrong verifier burns the code (401).",
    ),
    ("GET", "/api/v1/orgs/{org}/identity-providers"): (
        "List identity providers",
        "The organization's OIDC and SAML providers with what to register at the IdP "
        "(redirect URI, SP entity id, ACS URL); the client secret only as "
        "`has_client_secret`. Needs `sso:manage`.",
    ),
    ("POST", "/api/v1/orgs/{org}/identity-providers"): (
        "Connect an identity provider",
        "OIDC (issuer, client id, client secret stored encrypted) or SAML (metadata URL or "
        "XML, or entity id, SSO URL and signing certificates). A private issuer or "
        "metadata URL is 400 unless listed in `allowed_private_hosts`. Needs `sso:manage`, "
        "signed in.",
    ),
    ("GET", "/api/v1/orgs/{org}/identity-providers/{id}"): (
        "Show an identity provider",
        "One provider; the client secret is never returned. Needs `sso:manage`.",
    ),
    ("PATCH", "/api/v1/orgs/{org}/identity-providers/{id}"): (
        "Change an identity provider",
        "Change settings, enable or disable it, replace the client secret (a 2FA user "
        "gives a fresh `otp_code`, also to move the issuer). Needs `sso:manage`.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/identity-providers/{id}"): (
        "Delete an identity provider",
        "Delete it with its links and rules; the last enabled provider of an org that "
        "enforces SSO stays (409). Needs `sso:manage`.",
    ),
    ("GET", "/api/v1/orgs/{org}/identity-providers/{id}/mappings"): (
        "List group mapping rules",
        "IdP group -> role and/or team rules of one provider. Needs `sso:manage`.",
    ),
    ("POST", "/api/v1/orgs/{org}/identity-providers/{id}/mappings"): (
        "Add a group mapping rule",
        "Members in this IdP group get the role and/or join the team at every SSO "
        "sign-in; bounded by what the rule's maker holds. Needs `sso:manage`.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/identity-providers/{id}/mappings/{rule_id}"): (
        "Delete a group mapping rule",
        "What the rule granted goes at each member's next SSO sign-in. Needs `sso:manage`.",
    ),
    ("GET", "/api/v1/orgs/{org}/sso-domains"): (
        "List claimed e-mail domains",
        "Pending and verified domains; a pending one's challenge is shown to Owners only. "
        "Needs `sso:manage`.",
    ),
    ("POST", "/api/v1/orgs/{org}/sso-domains"): (
        "Claim an e-mail domain",
        "The domain is pending with a random challenge until an Owner confirms it; a domain "
        "verified by another organization is 409. Needs `sso:manage`.",
    ),
    ("GET", "/api/v1/orgs/{org}/sso-domains/{id}"): (
        "Show a claimed domain",
        "One claimed domain and its status. Needs `sso:manage`.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/sso-domains/{id}"): (
        "Give up a domain",
        "Remove a claim; a verified domain only by an Owner. Needs `sso:manage`.",
    ),
    ("POST", "/api/v1/orgs/{org}/sso-domains/{id}/confirm"): (
        "Confirm a domain",
        "An Owner enters the challenge back (the stand-in for a DNS TXT record); the "
        "domain is then verified for this organization only.",
    ),
    # --- provider accounts ------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/provider-accounts"): (
        "List provider accounts",
        "Upstream accounts (OpenAI, Azure OpenAI, Anthropic, OpenAI-compatible servers) "
        "with their models; secrets only as `has_secret`. Needs `provider_account:view`.",
    ),
    ("POST", "/api/v1/orgs/{org}/provider-accounts"): (
        "Register a provider account",
        "Add an upstream account with its base URL, models and secret (or secret "
        "reference). A base URL on a private or loopback address is 400 unless the "
        "organization lists its host in `allowed_private_hosts`. Needs "
        "`provider_account:manage`.",
    ),
    ("GET", "/api/v1/orgs/{org}/provider-accounts/{id}"): (
        "Show a provider account",
        "One provider account; the secret is never returned. Needs `provider_account:view`.",
    ),
    ("PATCH", "/api/v1/orgs/{org}/provider-accounts/{id}"): (
        "Change a provider account",
        "Change base URL, models, deployments or tags. Changing the base URL of an "
        "account with a secret needs a signed-in user and, with 2FA, a fresh "
        "`otp_code`. Needs `provider_account:manage` (role or grant on this account).",
    ),
    ("DELETE", "/api/v1/orgs/{org}/provider-accounts/{id}"): (
        "Delete a provider account",
        "Delete the account and its encrypted secret. Needs `provider_account:manage`.",
    ),
    ("PUT", "/api/v1/orgs/{org}/provider-accounts/{id}/secret"): (
        "Set or replace the upstream secret",
        "Store a new secret (encrypted at rest) or a secret reference; replacing one "
        "asks a 2FA user for a fresh `otp_code`. The secret is never shown again.",
    ),
    ("GET", "/api/v1/orgs/{org}/provider-accounts/{id}/grants"): (
        "List who may manage this account",
        "Teams and users granted `provider_account:manage` on this one account.",
    ),
    ("POST", "/api/v1/orgs/{org}/provider-accounts/{id}/grants"): (
        "Grant management of this account",
        "Give one team or one user `provider_account:manage` on this account only.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/provider-accounts/{id}/grants"): (
        "Withdraw a per-account grant",
        "Take back a team's or user's grant on this account.",
    ),
    # --- access rules -----------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/access-rules"): (
        "List model access rules",
        "Which models (FQNs, `account/*` patterns, tags) each user, team, role and "
        "service account may use. No rule, no access. Needs `model:read`.",
    ),
    ("POST", "/api/v1/orgs/{org}/access-rules"): (
        "Grant models (add a rule)",
        "Add one rule: `models` and at least one of `users`, `teams`, `roles`, "
        "`service_accounts`. Unknown names are 400. Needs `policy:manage`.",
    ),
    ("GET", "/api/v1/orgs/{org}/access-rules/{id}"): (
        "Show an access rule",
        "One access rule by id. Needs `model:read`.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/access-rules/{id}"): (
        "Delete an access rule",
        "Withdraw one rule; gateway processes see it on the next call. Needs `policy:manage`.",
    ),
    ("GET", "/api/v1/orgs/{org}/access-rules.yaml"): (
        "Export the rules as YAML",
        "Every rule as one `authz_rules:` YAML document, with a `deployments:` section "
        "when the organization has deployments. Needs `model:read`.",
    ),
    ("PUT", "/api/v1/orgs/{org}/access-rules.yaml"): (
        "Replace the rules from YAML",
        "Replace the whole rule set with an `authz_rules:` document (YAML or JSON), "
        "all or nothing: one bad rule and nothing changes (400). Needs `policy:manage`. "
        "An optional `deployments:` section replaces the deployments in the same "
        "transaction (with the deployment permissions for what changes).",
    ),
    ("GET", "/api/v1/orgs/{org}/access-rules/effective"): (
        "Explain effective model access",
        "`?user=` or `?service_account=`: the models that identity may use; "
        "`?model=`: who may use that model; neither: the caller's own models.",
    ),
    # --- deployments ------------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/deployments"): (
        "List deployments",
        "Named model endpoints of the organization, called through the gateway as "
        "`deployment/<name>`: status, routing strategy, targets and current version. "
        "Needs `deployment:view`.",
    ),
    ("POST", "/api/v1/orgs/{org}/deployments"): (
        "Create a deployment",
        "A name, the routing fields (`strategy`, `targets`, `retries`, `fallback_on`, "
        "`breaker`, `health_check`) and optionally a `launcher` spec that starts a "
        "self-hosted endpoint. Each target names a provider account of this organization "
        "(another's is 404) with the model enabled, and one the caller may use (403). "
        "Version 1. Needs `deployment:create`.",
    ),
    ("GET", "/api/v1/orgs/{org}/deployments/{name}"): (
        "Show a deployment",
        "One deployment by name with its current routing. Needs `deployment:view`.",
    ),
    ("PATCH", "/api/v1/orgs/{org}/deployments/{name}"): (
        "Change a deployment",
        "Routing fields given replace the current ones and make a new version; "
        "`description` changes in place; `status` `stopped` pauses it and `ready` resumes "
        "it. Every gateway process follows on its next call. Needs `deployment:update`.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/deployments/{name}"): (
        "Delete a deployment",
        "Stop routing to it, stop what its launcher started, then delete it with its "
        "versions. Access rules naming it stay and grant nothing. Needs `deployment:delete`.",
    ),
    ("GET", "/api/v1/orgs/{org}/deployments/{name}/versions"): (
        "List a deployment's versions",
        "Every saved routing document, newest first, with its comment and the version "
        "a rollback copied. Needs `deployment:view`.",
    ),
    ("POST", "/api/v1/orgs/{org}/deployments/{name}/rollback"): (
        "Roll a deployment back",
        '`{"version": n}`: a new version copying version n\'s routing, checked again as '
        "if written now. Needs `deployment:update`.",
    ),
    ("GET", "/api/v1/orgs/{org}/deployments/{name}/health"): (
        "Show a deployment's health",
        "The deployment's status and each target's state (circuit breaker and active "
        "health check, shared by every gateway process). Needs `deployment:view`.",
    ),
    ("GET", "/api/v1/orgs/{org}/deployments.yaml"): (
        "Export the deployments as YAML",
        "Every deployment as one `deployments:` YAML document (name, description, launcher "
        "and routing fields). Needs `deployment:view`.",
    ),
    ("PUT", "/api/v1/orgs/{org}/deployments.yaml"): (
        "Replace the deployments from YAML",
        "Create, update and delete deployments to match a `deployments:` document (YAML "
        "or JSON), all or nothing; errors name their path (`deployments[1].targets[0]."
        "weight`). Needs `deployment:view` and create, update or delete for what changes.",
    ),
    # --- knowledge bases --------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/knowledge-bases"): (
        "List knowledge bases",
        "The collections you may see: those an access rule grants you (`knowledge_bases` "
        "in the rules), or all of them for managers (`knowledge_base:delete` or "
        "`policy:manage`), with their embedding model and ready document count. Needs "
        "`knowledge_base:view`.",
    ),
    ("POST", "/api/v1/orgs/{org}/knowledge-bases"): (
        "Create a knowledge base",
        "A named document collection embedded by `embedding_model` (an FQN or "
        "`deployment/<name>` you may use), cut into chunks of `chunk_size` characters "
        "overlapping by `chunk_overlap`. An access rule granting it to you is created "
        "with it. Needs `knowledge_base:create`.",
    ),
    ("GET", "/api/v1/orgs/{org}/knowledge-bases/{name}"): (
        "Get a knowledge base",
        "One collection you may see, with its settings and vector dimensions (known "
        "after the first document is embedded). Needs `knowledge_base:view`.",
    ),
    ("PATCH", "/api/v1/orgs/{org}/knowledge-bases/{name}"): (
        "Update a knowledge base",
        "Change its description or chunking, or its embedding model while it holds no "
        "documents. Needs `knowledge_base:create` and a rule granting the collection.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/knowledge-bases/{name}"): (
        "Delete a knowledge base",
        "Delete the collection with every document, chunk and vector. Needs "
        "`knowledge_base:delete`.",
    ),
    ("GET", "/api/v1/orgs/{org}/knowledge-bases/{name}/documents"): (
        "List a knowledge base's documents",
        "Every document of the collection, each version of a re-uploaded one included, "
        "with its ingestion status (`queued`, `parsing`, `embedding` with `chunks_done` of "
        "`chunks_total`, `ready`, or `failed` with `status_reason`). Needs "
        "`knowledge_base:view` and a rule granting the collection.",
    ),
    ("POST", "/api/v1/orgs/{org}/knowledge-bases/{name}/documents"): (
        "Upload a document",
        "Multipart (`file`, optional `name` and `metadata` as JSON text) or JSON (`name`, "
        "`text`, `content_type`, `metadata`): plain text, Markdown, HTML or PDF, checked "
        "at once (size, type against the bytes, encrypted or over-long PDFs, the org's "
        "storage) and answered 202 `queued`; a worker parses, chunks and embeds it through "
        "the gateway as you (your limits, quota, cost and audit). The same `name` again "
        "is a new version that replaces the ready one when it is ready itself. Needs "
        "`knowledge_base:add_data`, a rule granting the collection, `inference:run` and "
        "the embedding model.",
    ),
    ("GET", "/api/v1/orgs/{org}/knowledge-bases/{name}/documents/{id}"): (
        "Get a document",
        "One document's ingestion status and progress (poll it after an upload), size, "
        "pages and metadata. Needs `knowledge_base:view` and a rule granting the collection.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/knowledge-bases/{name}/documents/{id}"): (
        "Delete a document",
        "Delete the document (any version or status) with every chunk and vector; an "
        "ingestion under way stops. Needs `knowledge_base:add_data` and a rule granting "
        "the collection.",
    ),
    ("POST", "/api/v1/orgs/{org}/knowledge-bases/{name}/query"): (
        "Search a knowledge base",
        "Hybrid search of the collection's ready documents: vector similarity and full "
        "text, fused by rank; `top_k` (1-50), `min_score` (cosine similarity), metadata "
        "`filters`. The query is embedded as you through the gateway (your limits, cost "
        "and audit; you need the embedding model). Needs `knowledge_base:view` and a rule "
        "granting the collection.",
    ),
    # --- audit and usage --------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/audit-logs"): (
        "Read the audit log",
        "Append-only records of every authenticated request and decision, newest "
        "first, cursor-paginated; filter by actor, action (`auth:*` for a prefix), "
        "outcome, target, model, since, until. `?format=csv` or `?format=jsonl` streams "
        "every match. Needs `audit_log:view`.",
    ),
    ("GET", "/api/v1/orgs/{org}/usage"): (
        "Usage over time",
        "Requests, errors, denials, tokens, cost and latency from the rollups, grouped "
        "by model, key, user, team or service account, per hour or day (default: the "
        "last 7 days). Needs `usage:view`.",
    ),
    # --- SCIM tokens ----------------------------------------------------------------------
    ("GET", "/api/v1/orgs/{org}/scim-tokens"): (
        "List SCIM tokens",
        "The organization's SCIM tokens (prefix, last four characters, role, status, "
        "last use); never the token itself. Needs `sso:manage`.",
    ),
    ("POST", "/api/v1/orgs/{org}/scim-tokens"): (
        "Create a SCIM token",
        "Mint the bearer token an identity provider (Okta, Azure AD) uses for SCIM 2.0 "
        "provisioning at `scim_base_url`; shown in this answer only. `role` is what "
        "provisioned members get (default member, never owner, at most the creator's). "
        "Needs `sso:manage` and a signed-in person.",
    ),
    ("GET", "/api/v1/orgs/{org}/scim-tokens/{id}"): (
        "Get a SCIM token",
        "One SCIM token of the organization, without its secret. Needs `sso:manage`.",
    ),
    ("DELETE", "/api/v1/orgs/{org}/scim-tokens/{id}"): (
        "Revoke a SCIM token",
        "Revoke the token: the identity provider's next SCIM request is refused with 401. "
        "Needs `sso:manage`.",
    ),
}


def tag_for(path: str) -> str:
    """The resource tag of a REST path (``/api/v1/orgs/{org}/api-keys/{id}`` -> api-keys)."""
    if path.startswith("/api/llm/"):
        return "gateway"
    if path.startswith(("/api/v1/auth/", "/api/v1/invitations/")):
        return "invitations" if "/invitations/" in path else "auth"
    parts = path.removeprefix("/api/v1/").split("/")
    if len(parts) <= 2 or parts[2] == "transfer-ownership":
        return "orgs"
    resource = parts[2].removesuffix(".yaml")
    if resource == "audit-logs":
        return "audit"
    if resource in ("identity-providers", "sso-domains"):
        return "sso"
    return resource
