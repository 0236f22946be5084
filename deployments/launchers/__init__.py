"""The seam for launching self-hosted models: one interface, a registry of kinds.

A deployment created with a ``launcher`` spec (``{"kind": "local", ...}``) has its
endpoint started by that launcher; the launcher's ``start`` returns the state the
gateway needs (at least ``base_url``), saved on the deployment as
``launcher_state``; ``stop`` ends what ``start`` began. Implementations:
``local`` (starts the repository's fake upstream as a process: tests and demos)
and ``kubernetes`` (renders a vLLM Deployment and Service; applying them is the
cluster's job). docs/deployments-launchers.md describes both.

Both are registered when this module is imported; which ones a server offers is
``INFERIA_LAUNCHERS``, checked by :func:`get` on every call (the one place that
rule lives): callers always go through ``get`` (or :func:`validate`), never through
an implementation's class.
"""

from __future__ import annotations

from typing import Any, Protocol

from django.conf import settings

from inferia.errors import ValidationError


class Launcher(Protocol):
    kind: str

    def validate(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The normalized spec, or ValidationError naming the field (``launcher.model``)."""

    def start(
        self,
        deployment_id: str,
        spec: dict[str, Any],
        *,
        deployment_name: str = "",
        org_slug: str = "",
    ) -> dict[str, Any]:
        """Start the endpoint; the state to keep (``{"base_url": ..., ...}``). The names
        label what is started (Kubernetes objects); without them the launcher that needs
        them reads the saved deployment."""

    def stop(self, deployment_id: str, state: dict[str, Any]) -> None:
        """Stop what ``start`` started (idempotent)."""

    def status(self, state: dict[str, Any]) -> str:
        """``running``, ``stopped`` or ``failed``."""

    def describe(self, state: dict[str, Any]) -> str:
        """One line for people (dashboard, ``status_reason``): what runs where, or why not."""


_REGISTRY: dict[str, Launcher] = {}


def register(launcher: Launcher) -> None:
    _REGISTRY[launcher.kind] = launcher


def enabled() -> list[str]:
    """The kinds this server offers (``INFERIA_LAUNCHERS``), in that order."""
    return [kind for kind in settings.INFERIA_LAUNCHERS if kind in _REGISTRY]


def get(kind: Any) -> Launcher:
    """The launcher of ``kind`` if this server offers it; else VALIDATION_ERROR."""
    launcher = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if launcher is None:
        raise ValidationError(
            "Unknown launcher",
            details={"launcher.kind": [f"One of: {', '.join(enabled()) or 'none'}."]},
        )
    if kind not in settings.INFERIA_LAUNCHERS:
        raise ValidationError(
            "This launcher is not enabled on this server",
            details={
                "launcher.kind": [
                    f"The {kind!r} launcher is not enabled on this server; "
                    f"enabled: {', '.join(enabled()) or 'none'}."
                ]
            },
        )
    return launcher


def validate(spec: Any) -> dict[str, Any]:
    """A deployment's ``launcher`` spec, normalized by its launcher (``{}`` stays ``{}``:
    no launcher); VALIDATION_ERROR naming the field (``launcher.kind``, ``launcher.model``)."""
    if spec in (None, {}):
        return {}
    if not isinstance(spec, dict):
        raise ValidationError(
            "The launcher spec must be a mapping", details={"launcher": ["Required mapping."]}
        )
    return get(spec.get("kind")).validate(spec)


def _register_builtins() -> None:
    from deployments.launchers.kubernetes import KubernetesLauncher
    from deployments.launchers.local import LocalLauncher

    register(LocalLauncher())
    register(KubernetesLauncher())


_register_builtins()
