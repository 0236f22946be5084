"""System checks: every permission an API view declares is in the vocabulary."""

from __future__ import annotations

from django.core.checks import Error, register
from django.urls import URLPattern, URLResolver, get_resolver


def _views(patterns):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            view_class = getattr(pattern.callback, "cls", None)
            if view_class is not None:
                yield pattern, view_class


@register()
def check_required_permissions(app_configs, **kwargs):
    from inferia.api import ANY_MEMBER, OrgAPIView
    from orgs.access import PERMISSION_SET

    errors = []
    for _pattern, view_class in _views(get_resolver().url_patterns):
        if not issubclass(view_class, OrgAPIView):
            continue
        declared = view_class.required_permissions
        for method in view_class.http_method_names:
            if (
                hasattr(view_class, method)
                and method not in ("options", "head")
                and method.upper() not in declared
            ):
                errors.append(
                    Error(
                        f"{view_class.__name__} handles {method.upper()} without a required permission",
                        id="inferia.E001",
                    )
                )
        for method, permission in declared.items():
            if permission != ANY_MEMBER and permission not in PERMISSION_SET:
                errors.append(
                    Error(
                        f"{view_class.__name__} {method} requires unknown permission {permission!r}",
                        id="inferia.E002",
                    )
                )
    return errors


@register()
def check_input_serializers(app_configs, **kwargs):
    """Every write an API view handles declares its input (``inferia.api.InputGrammarMixin``):
    an ``InputSerializer`` subclass, ``None`` (no body) or ``RAW_BODY``."""
    from inferia.api import InputGrammarMixin, RawBody
    from inferia.serializers import InputSerializer

    errors = []
    for _pattern, view_class in _views(get_resolver().url_patterns):
        if not issubclass(view_class, InputGrammarMixin):
            continue
        declared = view_class.input_serializers
        for method in ("post", "put", "patch"):
            if hasattr(view_class, method) and method.upper() not in declared:
                errors.append(
                    Error(
                        f"{view_class.__name__} handles {method.upper()} without declaring "
                        "input_serializers for it",
                        id="inferia.E003",
                    )
                )
        for method, value in declared.items():
            if value is None or isinstance(value, RawBody):
                continue
            if not (isinstance(value, type) and issubclass(value, InputSerializer)):
                errors.append(
                    Error(
                        f"{view_class.__name__} {method} input {value!r} is not an InputSerializer",
                        id="inferia.E004",
                    )
                )
    return errors
