"""Template helpers: ``{% if access|can:"api_key:view" %}`` asks the same Access as the API."""

from __future__ import annotations

from django import template
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def can(access, permission: str) -> bool:
    return access is not None and access.can(permission)


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.simple_tag(takes_context=True)
def nav_current(context, *view_names: str) -> str:
    """`` aria-current="page"`` on the nav link of the page being shown (any of its views)."""
    request = context.get("request")
    match = getattr(request, "resolver_match", None)
    if match is not None and match.view_name in view_names:
        return mark_safe(' aria-current="page"')  # noqa: S308 - a constant, no user input
    return ""
