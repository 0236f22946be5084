"""The repository's docs stand alone: README.md and docs/*.md link only to files and
headings of the repository, and to no host outside it (example hosts aside)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXPECTED_DOCS = {
    "api.md",
    "errors.md",
    "permissions.md",
    "roles.md",
    "gateway.md",
    "sso.md",
    "cli.md",
    "scim.md",
}
# Hosts a doc may show as a link: this machine and the reserved example domains.
EXAMPLE_HOSTS = re.compile(
    r"^(localhost|127\.0\.0\.1|\[::1\]|0\.0\.0\.0|(.+\.)?example\.(com|org|net)|.+\.(example|internal|local|test))$"
)

FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`(?:[^`\n]|\n(?!\n))*`")  # may wrap, not across a blank line
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
AUTOLINK = re.compile(r"<(https?://[^>]+)>")
BARE_URL = re.compile(r"https?://[^\s)\]>\"'`]+")
HTML_HREF = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")


def _prose(text: str) -> str:
    """What a Markdown renderer turns into links: no code blocks, spans or comments."""
    return CODE_SPAN.sub("", FENCE.sub("", COMMENT.sub("", text)))


def links(text: str) -> list[str]:
    prose = _prose(text)
    found = INLINE_LINK.findall(prose) + REFERENCE_DEF.findall(prose)
    found += AUTOLINK.findall(prose) + HTML_HREF.findall(prose)
    without_links = INLINE_LINK.sub("", AUTOLINK.sub("", prose))
    found += BARE_URL.findall(without_links)
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def test_the_reference_exists():
    assert EXPECTED_DOCS <= {path.name for path in DOCS}
    readme = (ROOT / "README.md").read_text()
    for name in EXPECTED_DOCS:
        assert f"](docs/{name})" in readme, f"README does not link docs/{name}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(doc: Path):
    problems = []
    for target in links(doc.read_text()):
        parts = urlsplit(target)
        if parts.scheme in ("http", "https"):
            if not EXAMPLE_HOSTS.match(parts.hostname or ""):
                problems.append(f"{target}: links outside the repository")
            continue
        if parts.scheme or target.startswith("//"):
            problems.append(f"{target}: not a repository path")
            continue
        path = (doc.parent / unquote(parts.path)).resolve() if parts.path else doc
        if not path.is_relative_to(ROOT):
            problems.append(f"{target}: points outside the repository")
        elif not path.exists():
            problems.append(f"{target}: no such file or folder")
        elif parts.fragment:
            if path.suffix != ".md":
                problems.append(f"{target}: an anchor into a file that is not Markdown")
            elif parts.fragment not in anchors(path):
                problems.append(f"{target}: no heading with that anchor in {path.name}")
    assert problems == []


def test_the_checker_catches_what_it_should(tmp_path):
    """The link checker itself: outside links, missing files and anchors are caught."""
    text = (
        "See [a](https://github.com/x/y), <https://pypi.org/>, https://docs.djangoproject.com "
        "and [ok](http://127.0.0.1:8000/api/docs/), [file](docs/api.md#audit-log).\n"
        "`https://in-a-code-span.com` is not a link.\n```\nhttps://in-a-block.com\n```\n"
    )
    found = links(text)
    assert "https://github.com/x/y" in found and "https://pypi.org/" in found
    assert "https://docs.djangoproject.com" in found
    assert "http://127.0.0.1:8000/api/docs/" in found and "docs/api.md#audit-log" in found
    assert not any("in-a-" in link for link in found)
    assert slug("What an API key may carry") == "what-an-api-key-may-carry"
    assert slug("Log in — `POST /api/v1/auth/login`") == "log-in--post-apiv1authlogin"
    assert "audit-log" in anchors(ROOT / "docs" / "api.md")
    assert "no-such-heading" not in anchors(ROOT / "docs" / "api.md")
