"""Template helpers: ``{% if access|can:"api_key:view" %}`` asks the same Access as the API."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def can(access, permission: str) -> bool:
    return access is not None and access.can(permission)


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None
