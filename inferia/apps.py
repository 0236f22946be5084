from __future__ import annotations

from django.apps import AppConfig


class InferiaConfig(AppConfig):
    name = "inferia"
    verbose_name = "Inferia platform"

    def ready(self) -> None:
        from inferia import checks  # noqa: F401  (registers system checks)
        from inferia import schema  # noqa: F401  (registers OpenAPI extensions)
