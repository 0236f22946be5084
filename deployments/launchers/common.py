"""What the launchers share: the spec's field checks and their state folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.conf import settings

from inferia.errors import ValidationError
from keys import names

# A deployment id names files under the launcher folder: a UUID's characters only.
_DEPLOYMENT_ID_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}")


def check_deployment_id(deployment_id: str) -> str:
    """The id as a file name; anything else (``../x``) is a programming error."""
    deployment_id = str(deployment_id)
    if _DEPLOYMENT_ID_RE.fullmatch(deployment_id) is None:
        raise ValueError(f"not a deployment id: {deployment_id!r}")
    return deployment_id


def state_dir(kind: str) -> Path:
    """``INFERIA_LAUNCHER_DIR/<kind>``, created with mode 0700."""
    path = Path(settings.INFERIA_LAUNCHER_DIR) / kind
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def unknown_fields(spec: dict[str, Any], allowed: set[str], errors: dict) -> None:
    for key in sorted(map(str, set(spec) - allowed)):
        errors[f"launcher.{key}"] = ["Unknown field."]


def check_mapping(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValidationError(
            "The launcher spec must be a mapping", details={"launcher": ["Required mapping."]}
        )
    return spec


def check_model(spec: dict[str, Any], errors: dict) -> str:
    model = spec.get("model")
    if not names.is_model_name(model):
        errors["launcher.model"] = ["Required: a model name (meta-llama/Llama-3.1-8B-Instruct)."]
        return ""
    return str(model)


def integer(
    spec: dict[str, Any], key: str, errors: dict, *, low: int, high: int, default: int | None
) -> int | None:
    value = spec.get(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors[f"launcher.{key}"] = [f"Must be an integer from {low} to {high}."]
        return default
    return value


def raise_if(errors: dict[str, list[str]]) -> None:
    if errors:
        raise ValidationError("The launcher spec is invalid; nothing was started", details=errors)
