"""The demo UI's routes, in process (they touch no database): the page and its assets need no key,
nothing outside the static directory is served, and the demo key goes only to the page itself."""

from __future__ import annotations

import re

import httpx
import pytest

from wallet._loopback import host_of_header, is_loopback_host
from wallet.api.app import create_app
from wallet.config import Settings
from wallet.web.routes import STATIC_DIR

DEMO_KEY = "wk_demo-key-for-the-route-tests"
MODULE_IMPORT = re.compile(r'from "\./([\w-]+\.js)"')
ASSET_REFERENCE = re.compile(r'(?:href|src)="/ui/([\w.-]+)"')


async def get(
    path: str,
    *,
    demo_ui_key: str | None = DEMO_KEY,
    host: str = "127.0.0.1:8000",
    more_headers: list[tuple[str, str]] | None = None,
    **headers: str,
) -> httpx.Response:
    settings = Settings(database_url="postgresql://unused@127.0.0.1/unused", demo_ui_key=demo_ui_key)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        all_headers = [("Host", host), *(more_headers or []), *headers.items()]
        return await client.get(path, headers=all_headers)


def referenced_assets() -> set[str]:
    """Every file the page loads: from index.html's tags and the modules' imports."""
    names = set(ASSET_REFERENCE.findall((STATIC_DIR / "index.html").read_text()))
    for script in STATIC_DIR.glob("*.js"):
        names |= set(MODULE_IMPORT.findall(script.read_text()))
    return names


async def test_the_page_and_every_asset_it_loads_are_served_without_a_key() -> None:
    page = await get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assets = referenced_assets()
    assert {"app.js", "api.js", "money.js", "history.js", "style.css"} <= assets
    for name in sorted(assets):
        response = await get(f"/ui/{name}")
        assert response.status_code == 200, name
        expected = "text/css" if name.endswith(".css") else "text/javascript"
        assert response.headers["content-type"] == f"{expected}; charset=utf-8", name
        assert response.headers["x-content-type-options"] == "nosniff"


def test_the_page_loads_nothing_from_other_sites() -> None:
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


@pytest.mark.parametrize(
    "path", ["/ui/nope.js", "/ui/routes.py", "/ui/__init__.py", "/ui/..%2Froutes.py", "/ui/static"]
)
async def test_only_the_static_files_are_served(path: str) -> None:
    response = await get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_the_openapi_schema_lists_no_ui_route_but_the_ledger_balances() -> None:
    paths = (await get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not [path for path in paths if path.startswith("/ui")]
    balances = paths["/v1/ledger/balances"]["get"]
    assert balances["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LedgerBalances"
    }


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "127.0.0.2"])
async def test_the_session_gives_the_demo_key_to_a_page_on_a_loopback_address(host: str) -> None:
    response = await get("/ui/session", host=host)
    assert response.status_code == 200
    assert response.json() == {"api_key": DEMO_KEY}
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("fetch_site", ["same-origin", "none"])
async def test_the_page_and_the_address_bar_may_ask_for_the_session(fetch_site: str) -> None:
    response = await get("/ui/session", more_headers=[("Sec-Fetch-Site", fetch_site)])
    assert response.json() == {"api_key": DEMO_KEY}


@pytest.mark.parametrize("demo_ui_key", [None, ""])
async def test_without_a_demo_key_the_session_is_not_found(demo_ui_key: str | None) -> None:
    response = await get("/ui/session", demo_ui_key=demo_ui_key)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("host", "fetch_site"),
    [
        ("rebound.example:8000", "same-origin"),  # a name of another site that resolves to 127.0.0.1
        ("192.0.2.10:8000", "same-origin"),
        ("127.0.0.1:8000", "cross-site"),
        ("127.0.0.1:8000", "same-site"),
    ],
)
async def test_the_session_refuses_other_sites(host: str, fetch_site: str) -> None:
    response = await get("/ui/session", host=host, more_headers=[("Sec-Fetch-Site", fetch_site)])
    assert response.status_code == 404
    assert DEMO_KEY not in response.text


@pytest.mark.parametrize(
    "host",
    [
        "[::1]evil.test",  # once read as [::1]
        "[::1]evil.test:8000",
        "::1",  # an IPv6 address in a Host header needs brackets
        "[127.0.0.1]",  # brackets hold only IPv6
        "127.0.0.1:8000:8000",
        "127.0.0.1:80x",
        "127.0.0.1 evil.test",
        "localhost@evil.test",
        "",
    ],
)
async def test_the_session_refuses_a_host_that_is_not_strictly_host_and_port(host: str) -> None:
    response = await get("/ui/session", host=host)
    assert response.status_code == 404
    assert DEMO_KEY not in response.text


@pytest.mark.parametrize(
    "hosts",
    [("127.0.0.1:8000", "evil.test"), ("evil.test", "127.0.0.1:8000"), ("127.0.0.1:8000", "127.0.0.1:8000")],
)
async def test_the_session_refuses_a_request_with_two_host_headers(hosts: tuple[str, str]) -> None:
    response = await get("/ui/session", host=hosts[0], more_headers=[("Host", hosts[1])])
    assert response.status_code == 404
    assert DEMO_KEY not in response.text


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.10", False),
        ("localhost.example", False),
        ("[127.0.0.1]", False),
        ("[::1", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:8000", "127.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]:8000", "[::1]"),
        ("127.0.0.1:", "127.0.0.1"),
        ("::1", None),
        ("[::1]evil.test", None),
        ("a:1:2", None),
        ("host/path", None),
    ],
)
def test_host_of_header(header: str, host: str | None) -> None:
    assert host_of_header(header) == host
