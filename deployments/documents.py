"""A deployment as a document entry: the shape of ``deployments:`` in YAML, one grammar.

An entry is the deployment's name, description and launcher spec beside the fields of
its routing document (``deployments.config``), flat, so that an error names the path a
user reads (``deployments[1].targets[0].weight``)::

    deployments:
      - name: chat
        description: Chat for everyone
        strategy: priority
        targets:
          - {name: primary, account: openai-main, model: gpt-4o}
          - {name: cheap, account: openai-main, model: gpt-4o-mini, priority: 1}
        launcher: {kind: local}      # optional: what starts a self-hosted endpoint

The same entry is the body of ``POST /api/v1/orgs/{org}/deployments``. This module
splits and writes entries; whether an entry is valid for the org (accounts, models,
who may route where) is ``deployments.services``'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from deployments import config as routing
from deployments.config import _FIELDS as ROUTING_FIELDS  # the routing document's top-level fields
from deployments.models import Deployment
from inferia.errors import ValidationError

ENTRY_FIELDS = ("name", "description", "launcher")
DESCRIPTION_MAX_LENGTH = 500


@dataclass
class Entry:
    """One entry split in its parts; ``errors`` name paths under ``where``."""

    name: str
    description: str
    launcher: dict[str, Any]
    config: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)


def routing_document(data: dict[str, Any]) -> dict[str, Any]:
    """The routing fields of a flat entry (or of an API body)."""
    return {key: value for key, value in data.items() if key in ROUTING_FIELDS}


def split_entry(raw: Any, where: str) -> Entry:
    """Split a raw entry: name, description and launcher checked for shape, unknown
    fields named (``deployments[0].colour``), the rest is the routing document."""
    errors: dict[str, list[str]] = {}
    if not isinstance(raw, dict):
        return Entry("", "", {}, {}, {where: ["Each deployment must be a mapping."]})
    for key in sorted(map(str, set(raw) - set(ENTRY_FIELDS) - set(ROUTING_FIELDS))):
        errors[f"{where}.{key}"] = ["Unknown field."]
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        errors[f"{where}.name"] = ["Required: the deployment's name."]
        name = ""
    description = raw.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > DESCRIPTION_MAX_LENGTH:
        errors[f"{where}.description"] = [f"Text of at most {DESCRIPTION_MAX_LENGTH} characters."]
        description = ""
    launcher = raw.get("launcher") or {}
    if not isinstance(launcher, dict):
        errors[f"{where}.launcher"] = ["A mapping with a 'kind' (or leave it out)."]
        launcher = {}
    return Entry(name, description, launcher, routing_document(raw), errors)


def canonical(config: dict[str, Any]) -> dict[str, Any]:
    """A stored routing document in the grammar's field order (PostgreSQL's jsonb keeps
    no key order); as stored if it no longer parses."""
    try:
        return routing.to_document(routing.parse(config))
    except ValidationError:
        return dict(config)


def entry_for(deployment: Deployment) -> dict[str, Any]:
    """The entry of a stored deployment (what ``split_entry`` reads back)."""
    entry: dict[str, Any] = {"name": deployment.name}
    if deployment.description:
        entry["description"] = deployment.description
    entry.update(canonical(deployment.config))
    if deployment.launcher:
        entry["launcher"] = dict(deployment.launcher)
    return entry


def export_entries() -> list[dict[str, Any]]:
    """Every deployment of the active org, by name."""
    return [entry_for(d) for d in Deployment.objects.order_by("name")]


def export_yaml() -> str:
    return yaml.safe_dump({"deployments": export_entries()}, sort_keys=False)
