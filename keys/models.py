"""API keys, service accounts, provider accounts and access rules (issue #3)."""
