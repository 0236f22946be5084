"""The grammar of model names, FQNs and model patterns, in one place.

A provider account names its upstream models; a model's fully qualified name
(FQN) is ``account/model``. Account names are slugs and never hold '/', while
a model name may (Hugging Face style names served by vLLM, e.g.
``meta-llama/Llama-3.1-8B-Instruct``): an FQN splits at its *first* '/'.

A model name is one or more segments joined by single '/'s. Each segment starts
with a letter or digit, so there is no empty segment ('//', a leading or
trailing '/'), no '.' or '..' segment, and no '*' (kept for patterns). No
whitespace or control characters anywhere, at most ``MODEL_MAX_LENGTH`` chars.

Patterns (an API key's model restriction, access rules) are ``account/model``,
``account/*`` (every model of the account) or ``account/prefix/*`` (every model
of the account whose name starts with ``prefix/``).
"""

from __future__ import annotations

import re

ACCOUNT_MAX_LENGTH = 50
MODEL_MAX_LENGTH = 200

_ACCOUNT = r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?"
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._:@+_-]*"
_MODEL = rf"{_SEGMENT}(?:/{_SEGMENT})*"

# fullmatch (never '$', which also matches before a trailing newline).
ACCOUNT_RE = re.compile(_ACCOUNT)
MODEL_RE = re.compile(_MODEL)
PREFIX_PATTERN_RE = re.compile(rf"{_MODEL}/\*")


def split_fqn(fqn: str) -> tuple[str, str]:
    """``account/model`` -> (account, model), split at the first '/'."""
    account, _, model = fqn.partition("/")
    return account, model


def is_model_name(name: object) -> bool:
    """A provider account's model name: ``gpt-4o``, ``meta-llama/Llama-3.1-8B-Instruct``."""
    return (
        isinstance(name, str)
        and len(name) <= MODEL_MAX_LENGTH
        and MODEL_RE.fullmatch(name) is not None
    )


def is_model_pattern(pattern: object) -> bool:
    """``account/model``, ``account/*`` or ``account/prefix/*`` (not ``*`` alone, not a tag)."""
    if not isinstance(pattern, str) or "/" not in pattern:
        return False
    account, model = split_fqn(pattern)
    if ACCOUNT_RE.fullmatch(account) is None:
        return False
    if model == "*":
        return True
    if len(model) > MODEL_MAX_LENGTH:
        return False
    return MODEL_RE.fullmatch(model) is not None or PREFIX_PATTERN_RE.fullmatch(model) is not None


def model_matches(pattern_model: str, model: str) -> bool:
    """Whether the model part of a pattern (``*``, ``prefix/*`` or a name) covers ``model``."""
    if pattern_model == "*":
        return True
    if pattern_model.endswith("/*"):
        return model.startswith(pattern_model[:-1])
    return pattern_model == model


def pattern_covers(outer: str, inner: str) -> bool:
    """Whether every model ``inner`` (a pattern) can name is also named by ``outer``.

    Both are key/rule patterns (``account/model``, ``account/*``, ``account/prefix/*``).
    """
    outer_account, outer_model = split_fqn(outer)
    inner_account, inner_model = split_fqn(inner)
    if outer_account != inner_account:
        return False
    if outer_model == "*":
        return True
    if inner_model == "*":
        return False
    if outer_model.endswith("/*"):
        # A prefix covers a name or a narrower prefix that starts with it.
        return inner_model.startswith(outer_model[:-1])
    return outer_model == inner_model


def patterns_cover(outer: list[str], inner: list[str]) -> bool:
    """Whether a model restriction ``inner`` stays within ``outer`` ([] means every model)."""
    if not outer:
        return True
    if not inner:
        return False
    return all(any(pattern_covers(o, i) for o in outer) for i in inner)
