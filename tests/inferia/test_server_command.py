"""The one uvicorn command line (inferia/server.py) that ``manage.py serve`` and the
benchmark run: the C loop and parser named (no silent pure-Python fall-back), and no
proxy-header rewriting of its own (the app's INFERIA_TRUSTED_PROXIES rule is the one)."""

from __future__ import annotations

import importlib.util

from inferia.server import uvicorn_command


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_production_options():
    command = uvicorn_command("/venv/bin/python", "127.0.0.1", 8123, "--workers", "4")
    assert command[:4] == ["/venv/bin/python", "-m", "uvicorn", "inferia.asgi:application"]
    assert _option(command, "--port") == "8123"
    assert _option(command, "--loop") == "uvloop"
    assert _option(command, "--http") == "httptools"
    assert int(_option(command, "--backlog")) >= 4096
    assert "--no-proxy-headers" in command
    assert "--no-access-log" in command
    assert command[-2:] == ["--workers", "4"]


def test_the_named_loop_and_parser_are_installed():
    for module in ("uvloop", "httptools"):
        assert importlib.util.find_spec(module) is not None, module
