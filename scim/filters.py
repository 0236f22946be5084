"""SCIM filters (RFC 7644 section 3.4.2.2) as Django queries.

The grammar is parsed by ``scim2-filter-parser`` (its lexer and parser only). The
tree is mapped here onto the annotations of ``scim.selectors`` with a closed list of
attributes per resource: an attribute or operator not listed is an ``invalidFilter``
error, never ignored (ignoring it would widen the answer to every row).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.db.models import Q
from scim2_filter_parser import ast
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser

from inferia.errors import ValidationError

MAX_FILTER_LENGTH = 1000
STRING, BOOLEAN = "string", "boolean"
_STRING_OPS = {"eq": "exact", "ne": "exact", "co": "contains", "sw": "startswith", "ew": "endswith"}


class InvalidFilter(ValidationError):
    """A filter SCIM cannot evaluate here (``scimType: invalidFilter``)."""


@dataclass(frozen=True)
class Attribute:
    """A filterable SCIM attribute: the queryset field it maps to and how it compares."""

    field: str
    kind: str = STRING
    case_exact: bool = False


def _attribute_name(path: ast.AttrPath, namespace: str, schema: str) -> str:
    if isinstance(path.attr_name, ast.Filter):
        raise InvalidFilter("Filters inside attribute paths are not supported here")
    if path.uri and path.uri.lower() != schema.lower():
        raise InvalidFilter(f"Unknown schema in filter: {path.uri}")
    name = str(path.attr_name)
    if path.sub_attr is not None:
        name = f"{name}.{path.sub_attr.value}"
    return f"{namespace}.{name}" if namespace else name


def _comparison(
    node: ast.AttrExpr, attributes: Mapping[str, Attribute], namespace: str, schema: str
) -> Q:
    name = _attribute_name(node.attr_path, namespace, schema)
    attribute = attributes.get(name.lower())
    if attribute is None:
        raise InvalidFilter(f"Filtering on {name} is not supported")
    op = str(node.value).lower()
    if op == "pr":
        if attribute.kind == BOOLEAN:
            return Q(**{f"{attribute.field}__isnull": False})
        return Q(**{f"{attribute.field}__isnull": False}) & ~Q(**{attribute.field: ""})
    raw = node.comp_value.value if node.comp_value is not None else None
    if attribute.kind == BOOLEAN:
        if op not in ("eq", "ne") or str(raw).lower() not in ("true", "false"):
            raise InvalidFilter(f"{name} compares with eq or ne to true or false")
        query = Q(**{attribute.field: str(raw).lower() == "true"})
        return ~query if op == "ne" else query
    lookup = _STRING_OPS.get(op)
    if lookup is None:
        raise InvalidFilter(f"The operator {op} is not supported for {name}")
    if raw is None:
        raise InvalidFilter(f"{name} compares with a string")
    if not attribute.case_exact:
        lookup = "i" + lookup
    query = Q(**{f"{attribute.field}__{lookup}": str(raw)})
    return ~query if op == "ne" else query


def _visit(node: object, attributes: Mapping[str, Attribute], namespace: str, schema: str) -> Q:
    if isinstance(node, ast.Filter):
        inner_namespace = namespace
        if node.namespace is not None:
            # A value path, emails[value eq "x"]: its attributes are the path's sub-attributes.
            inner_namespace = _attribute_name(node.namespace, namespace, schema)
        query = _visit(node.expr, attributes, inner_namespace, schema)
        return ~query if node.negated else query
    if isinstance(node, ast.LogExpr):
        left = _visit(node.expr1, attributes, namespace, schema)
        right = _visit(node.expr2, attributes, namespace, schema)
        return left & right if str(node.op).lower() == "and" else left | right
    if isinstance(node, ast.AttrExpr):
        return _comparison(node, attributes, namespace, schema)
    raise InvalidFilter("Unsupported filter expression")


def filter_query(text: str, attributes: Mapping[str, Attribute], *, schema: str) -> Q:
    """The ``Q`` selecting what ``text`` selects; ``attributes`` maps lower-cased SCIM
    attribute names (``emails.value``) to fields. Raises InvalidFilter."""
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilter(f"A filter has at most {MAX_FILTER_LENGTH} characters")
    try:
        tree = SCIMParser().parse(SCIMLexer().tokenize(text))
    except Exception as exc:  # the parser raises bare Exceptions and its own kinds
        raise InvalidFilter("The filter is not valid SCIM filter syntax") from exc
    if tree is None:
        raise InvalidFilter("The filter is empty")
    return _visit(tree, attributes, "", schema)
