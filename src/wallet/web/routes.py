"""The demo UI: the page at `/`, its assets under `/ui/`, and the demo session key.

The assets are a fixed set of files read once from `static/`; any other name is a 404, so no
request can reach a file outside that directory. None of these routes needs an API key, and none
is listed in the OpenAPI schema.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from wallet._loopback import host_of_header, is_loopback_host
from wallet.config import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Sec-Fetch-Site values of the page's own requests (fetch from the page; the address bar).
OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def _read_assets() -> dict[str, tuple[bytes, str]]:
    assets = {
        path.name: (path.read_bytes(), MEDIA_TYPES[path.suffix])
        for path in sorted(STATIC_DIR.iterdir())
        if path.suffix in MEDIA_TYPES
    }
    assert "index.html" in assets, f"the demo UI's page is missing from {STATIC_DIR}"
    return assets


ASSETS = _read_assets()

router = APIRouter(include_in_schema=False)


def _asset(name: str) -> Response:
    found = ASSETS.get(name)
    if found is None:
        raise HTTPException(404)
    body, media_type = found
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return Response(body, media_type=media_type, headers=headers)


@router.get("/")
async def index() -> Response:
    return _asset("index.html")


def _demo_key_for(request: Request) -> str | None:
    """The demo key, only to the page itself opened on a loopback address: a page of another
    site (even one whose name resolves to 127.0.0.1) is refused, and so is a request with more
    than one Host header or one that is not strictly `host[:port]`."""
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    if not settings.demo_ui_key:
        return None
    hosts = request.headers.getlist("host")
    if len(hosts) != 1:
        return None
    host = host_of_header(hosts[0])
    if host is None or not is_loopback_host(host):
        return None
    if request.headers.get("sec-fetch-site", "same-origin") not in OWN_FETCH_SITES:
        return None
    return settings.demo_ui_key


@router.get("/ui/session")
async def session(request: Request) -> Response:
    """`{"api_key": ...}` in embedded demo mode; 404 otherwise (the page then asks for a key)."""
    secret = _demo_key_for(request)
    if secret is None:
        raise HTTPException(404)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
    return Response(orjson.dumps({"api_key": secret}), media_type="application/json", headers=headers)


@router.get("/ui/{name}")
async def asset(name: str) -> Response:
    return _asset(name)
