"""Helpers of ``test_sso_e2e.py``: a person's browser without a browser (an httpx client
that keeps cookies, follows redirects and submits the forms of our pages and of the
identity providers'), ORM calls from a test that drives Chromium, and Chromium itself."""

from __future__ import annotations

import contextlib
import html.parser
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from tests.conftest import require_or_skip

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def orm(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on a worker thread. Playwright's sync API runs an event loop on the
    test's thread, where Django refuses ORM calls; the live server's data is committed
    (``transactional_db``), so another thread reads the same database."""
    from django.db import connections

    def call() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=120)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright (never a downloaded browser)."""
    if not os.path.exists(CHROMIUM):
        require_or_skip("the browser tests need Debian's chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    inputs: set[str] = field(default_factory=set)


class Forms(html.parser.HTMLParser):
    """Every form of a page: action, method, its inputs and their values."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append(
                Form(action=values.get("action") or "", method=(values.get("method") or "get"))
            )
        elif tag in ("input", "button") and self.forms and values.get("name"):
            name = values["name"] or ""
            self.forms[-1].inputs.add(name)
            if tag == "input":
                self.forms[-1].fields[name] = values.get("value") or ""


class HttpBrowser:
    """A person's browser as an httpx client: cookies, redirects, and the forms a person
    fills in on the identity providers' pages (sign-in, consent, and the SAML HTTP-POST
    binding's self-submitting form)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client = httpx.Client(timeout=30, follow_redirects=False)
        self.visited: list[str] = []

    def close(self) -> None:
        self.client.close()

    def get(self, url: str) -> httpx.Response:
        return self.client.get(urljoin(self.base, url))

    def start(self, org: str, provider_id: str) -> httpx.Response:
        """Press "Continue with ..." on ``/auth/sso/{org}`` (a POST with its CSRF token)."""
        page = self.get(f"/auth/sso/{org}")
        assert page.status_code == 200, page.text[:500]
        form = next(f for f in Forms(page.text).forms if f.fields.get("provider") == provider_id)
        return self.client.post(urljoin(str(page.url), form.action), data=form.fields)

    def walk(
        self,
        response: httpx.Response,
        *,
        username: str = "",
        password: str = "",
        consent: str = "confirm",
        tamper: Callable[[dict[str, str]], dict[str, str]] | None = None,
        until: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Follow redirects and fill in the providers' pages until a page that asks
        nothing (ours, at the end) or ``until`` says stop. ``tamper`` may change the
        SAML form's fields before they are posted to our ACS."""
        for _ in range(30):
            self.visited.append(f"{response.request.method} {response.url}")
            if until is not None and until(response):
                return response
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                response = self.client.get(location)
                continue
            if response.status_code not in (200, 401) or urlsplit(str(response.url)).netloc == (
                urlsplit(self.base).netloc
            ):
                return response
            forms = Forms(response.text).forms
            login = next((f for f in forms if {"username", "password"} <= f.inputs), None)
            saml = next((f for f in forms if "SAMLResponse" in f.fields), None)
            answer = next((f for f in forms if f.action.endswith(f"/{consent}")), None)
            if login is not None:
                if response.status_code == 401:
                    return response  # the provider refused the password
                form, data = login, {**login.fields, "username": username, "password": password}
            elif saml is not None:
                form, data = saml, (tamper or dict)(dict(saml.fields))
            elif answer is not None:
                form, data = answer, dict(answer.fields)
            else:
                return response
            response = self.client.post(urljoin(str(response.url), form.action), data=data)
        raise AssertionError(f"the sign-in never ended: {self.visited}")
