"""The seam for launching self-hosted models: one interface, a registry of kinds.

A deployment created with a ``launcher`` spec (``{"kind": "local", ...}``) has its
endpoint started by that launcher; the launcher's ``start`` returns the state the
gateway needs (at least ``base_url``), saved on the deployment as
``launcher_state``; ``stop`` ends what ``start`` began. Implementations:
``local`` (starts the repository's fake upstream as a process: tests and demos)
and ``kubernetes`` (renders a vLLM Deployment and Service; applying them is the
cluster's job).
"""

from __future__ import annotations

from typing import Any, Protocol

from inferia.errors import ValidationError


class Launcher(Protocol):
    kind: str

    def validate(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The normalized spec, or ValidationError naming the field (``launcher.model``)."""

    def start(self, deployment_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Start the endpoint; the state to keep (``{"base_url": ..., ...}``)."""

    def stop(self, deployment_id: str, state: dict[str, Any]) -> None:
        """Stop what ``start`` started (idempotent)."""

    def status(self, state: dict[str, Any]) -> str:
        """``running``, ``stopped`` or ``failed``."""


_REGISTRY: dict[str, Launcher] = {}


def register(launcher: Launcher) -> None:
    _REGISTRY[launcher.kind] = launcher


def get(kind: str) -> Launcher:
    launcher = _REGISTRY.get(kind)
    if launcher is None:
        raise ValidationError(
            "Unknown launcher",
            details={"launcher.kind": [f"One of: {', '.join(sorted(_REGISTRY))}."]},
        )
    return launcher
