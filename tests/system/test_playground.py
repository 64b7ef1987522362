"""GraphiQL on GET /graphql works offline: headless Chromium loads it, runs a query, and
follows a subscription over a WebSocket."""

from __future__ import annotations

import shutil
from urllib.parse import quote, urlparse

import httpx
import pytest
from playwright.sync_api import Route, sync_playwright

from tests.system.conftest import Server

pytestmark = [pytest.mark.system, pytest.mark.browser]

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_playground_runs_a_query_with_no_internet(server: Server) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium package is needed: make test installs it"
    token = httpx.post(f"{server.url}/api/v1/applications", json={"name": "from-the-browser"})
    assert token.status_code == 201

    outside: list[str] = []

    def only_loopback(route: Route) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    query = "{ applications(first: 5) { nodes { name chatsCount } } }"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.route("**/*", only_loopback)
            page.goto(f"{server.url}/graphql#query={quote(query)}")
            page.wait_for_selector(".graphiql-execute-button", timeout=30_000)
            page.click(".graphiql-execute-button")
            page.wait_for_function(
                "() => document.querySelector('.result-window')?.innerText"
                ".includes('from-the-browser')",
                timeout=30_000,
            )
            result = page.inner_text(".result-window")
        finally:
            browser.close()
    assert '"chatsCount": 0' in result
    assert outside == []


def test_playground_runs_a_subscription_over_a_websocket(server: Server) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium package is needed: make test installs it"
    token = httpx.post(f"{server.url}/api/v1/applications", json={"name": "live"}).json()["token"]
    assert httpx.post(f"{server.url}/api/v1/applications/{token}/chats", json={}).status_code == 201
    messages = f"{server.url}/api/v1/applications/{token}/chats/1/messages"
    assert httpx.post(messages, json={"body": "already stored"}).status_code == 201

    query = (
        f'subscription {{ messageEvents(applicationToken: "{token}", chatNumber: 1, '
        "afterNumber: 0) { kind message { number body } } }"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/graphql#query={quote(query)}")
            page.wait_for_selector(".graphiql-execute-button", timeout=30_000)
            page.click(".graphiql-execute-button")
            page.wait_for_function(
                "() => document.querySelector('.result-window')?.innerText"
                ".includes('already stored')",
                timeout=30_000,
            )
            # GraphiQL shows the latest event of a subscription: a new message replaces it.
            assert httpx.post(messages, json={"body": "sent live"}).status_code == 201
            page.wait_for_function(
                "() => document.querySelector('.result-window')?.innerText.includes('sent live')",
                timeout=30_000,
            )
            result = page.inner_text(".result-window")
        finally:
            browser.close()
    assert '"number": 2' in result and '"kind": "CREATED"' in result
