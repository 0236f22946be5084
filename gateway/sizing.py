"""How big a gateway request may be, and the most tokens it can cost.

One place for both, so the prompt limit and the reservation always look at the
same fields: every field that carries text to the model (``PROMPT_FIELDS``:
chat messages with their content parts, names, tool calls and tool results,
tool and function definitions, tool choice, response format, prediction; the
prompt and suffix of ``/completions``; the input of ``/embeddings``).

- The prompt limit (``max_prompt_chars``) counts the characters of every string
  in those fields but the structural ``role`` and ``type`` values (a token id in
  a token-array prompt counts as one).
- The reservation's prompt part is the UTF-8 length of the compact JSON
  serialization of those fields. That is an upper bound of the prompt tokens
  for byte-level BPE tokenizers (every token covers at least one byte of text),
  with the keys, quotes and brackets of each message standing in for the few
  formatting tokens the chat template adds per message and request.
- The completion part is ``max_tokens`` (or ``max_completion_tokens``, the
  larger when both are sent; the org's ``default_max_tokens`` or
  ``INFERIA_GATEWAY_DEFAULT_MAX_TOKENS`` when neither is) times the number of
  choices (``n``, or ``best_of`` for ``/completions``). Embeddings have none.

``max_tokens``, ``max_completion_tokens``, ``n`` and ``best_of`` must be
integers from 1 to ``INFERIA_GATEWAY_MAX_TOKENS_CAP`` (tokens) or
``INFERIA_GATEWAY_MAX_CHOICES`` (choices): anything else is VALIDATION_ERROR
naming the field, so a reservation is never negative or absurd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings

from inferia.errors import ValidationError

if TYPE_CHECKING:
    from orgs.policy import OrgPolicy

PROMPT_FIELDS = {
    "chat": ("messages", "tools", "functions", "tool_choice", "response_format", "prediction"),
    "completions": ("prompt", "suffix"),
    "embeddings": ("input",),
}
STRUCTURAL = frozenset({"role", "type"})  # their values are vocabulary, not prompt text
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
CHOICE_FIELDS = ("n", "best_of")


@dataclass(frozen=True)
class Size:
    prompt_chars: int
    prompt_tokens: int  # upper bound
    completion_tokens: int  # upper bound the client asked for (all choices)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _chars(value: Any) -> int:
    """Characters of every string in ``value`` (a number counts as one: a token id)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_chars(item) for key, item in value.items() if key not in STRUCTURAL)
    if isinstance(value, list):
        return sum(_chars(item) for item in value)
    if isinstance(value, bool) or value is None:
        return 0
    return 1


def prompt_room(size: Size, policy: OrgPolicy) -> int:
    """Characters a request measured as ``size`` may still add to its prompt under the
    org's ``max_prompt_chars`` (chat retrieval fits its passages in this)."""
    return int(policy.applied("max_prompt_chars")) - size.prompt_chars


def _bounded_int(body: dict[str, Any], field: str, cap: int) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    # bool is an int in Python and 1.0 a float in JSON: neither is a count.
    if type(value) is not int or not 1 <= value <= cap:
        raise ValidationError(
            f"'{field}' must be an integer from 1 to {cap}",
            details={field: [f"Give an integer from 1 to {cap}."]},
        )
    return value


def measure(endpoint: str, body: dict[str, Any], policy: OrgPolicy) -> Size:
    """Validate the request's size fields and bound its tokens.

    Raises VALIDATION_ERROR (``details`` names the field) for a bad ``max_tokens``,
    ``max_completion_tokens``, ``n`` or ``best_of``, and for a prompt over the
    org's ``max_prompt_chars`` (``INFERIA_GATEWAY_MAX_PROMPT_CHARS``)."""
    token_cap = settings.INFERIA_GATEWAY_MAX_TOKENS_CAP
    asked = [_bounded_int(body, field, token_cap) for field in TOKEN_FIELDS]
    choices = [
        _bounded_int(body, field, settings.INFERIA_GATEWAY_MAX_CHOICES) for field in CHOICE_FIELDS
    ]
    fields = {name: body[name] for name in PROMPT_FIELDS.get(endpoint, ()) if name in body}
    chars = _chars(fields)
    max_chars = int(policy.applied("max_prompt_chars"))
    if chars > max_chars:
        field = PROMPT_FIELDS[endpoint][0]
        raise ValidationError(
            f"Prompt too long: {chars} characters, the limit is {max_chars}",
            details={field: [f"At most {max_chars} characters."]},
        )
    prompt_tokens = len(orjson.dumps(fields)) if fields else 0
    if endpoint == "embeddings":
        return Size(chars, prompt_tokens, 0)
    given = [value for value in asked if value is not None]
    if given:
        per_choice = max(given)
    else:
        default = policy.applied("default_max_tokens")
        per_choice = min(max(1, int(default)), token_cap)
    count = max([value for value in choices if value is not None] or [1])
    return Size(chars, prompt_tokens, per_choice * count)
