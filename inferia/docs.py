"""The interactive API docs view (``/api/docs/``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response


class DocsView(SpectacularSwaggerView):
    """The interactive docs; OPTIONS answers JSON (the HTML renderer has no
    template for DRF's metadata and would fail with a 500)."""

    def options(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type
        return super().options(request, *args, **kwargs)
