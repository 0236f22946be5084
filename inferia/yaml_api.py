"""YAML endpoints of ``/api/v1`` (``access-rules.yaml``, ``deployments.yaml``): the body
parsers and the negotiation they share."""

from __future__ import annotations

from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.parsers import BaseParser


class YamlTextParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read().decode("utf-8", errors="replace")


class YamlAliasParser(YamlTextParser):
    media_type = "text/yaml"


class YamlEndpointNegotiation(BaseContentNegotiation):
    """Ignore Accept: GET always answers YAML (a plain response) and everything else,
    errors included, JSON; so ``Accept: application/yaml`` is not refused with 406."""

    def select_parser(self, request, parsers):
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
