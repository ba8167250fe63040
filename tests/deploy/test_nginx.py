"""The shipped nginx configuration (deploy/nginx/wallet.conf.template), rendered with local
ports and a self-signed certificate, run by Debian's nginx in front of a real `wallet serve`:
TLS, the HTTP -> HTTPS redirect, the proxy headers, the request id and the body limit."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import Server, free_port, new_wallet

REPOSITORY = Path(__file__).resolve().parents[2]
TEMPLATE = REPOSITORY / "deploy" / "nginx" / "wallet.conf.template"
PLACEHOLDER = re.compile(r"\$\{(WALLET_PROXY_[A-Z_]+)\}")
pytestmark = pytest.mark.nginx

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
START_TIMEOUT_SECONDS = 10.0
BODY_SIZE_MAX = 64 * 1024

HARNESS = """\
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/wallet.conf;
}}
"""


def nginx_binary() -> str:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail(
        "nginx is not installed, so the proxy configuration cannot be tested: "
        "run `apt-get install -y nginx` (nginx-light works too); .ci/run installs it"
    )


def render(template: str, values: dict[str, str]) -> str:
    """What the nginx image's envsubst step does: replace the ${WALLET_PROXY_*} names, only them."""
    names = set(PLACEHOLDER.findall(template))
    assert names == set(values), f"the template names {sorted(names)}"
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    certificate, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(certificate)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return certificate, key


@dataclass
class Proxy:
    process: subprocess.Popen[bytes]
    http_port: int
    https_port: int
    certificate: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def client(self, **options: Any) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.certificate))
        return httpx.Client(base_url=self.https_url, verify=context, timeout=10.0, **options)

    def access_log(self) -> list[dict[str, Any]]:
        lines = self.stdout_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _wait_for_port(proxy: Proxy, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            raise AssertionError(f"nginx exited: {proxy.stderr_path.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port}")


def start_proxy(directory: Path, upstream: str) -> Proxy:
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = self_signed_certificate(directory)
    (directory / "acme").mkdir()
    http_port, https_port = free_port(), free_port()
    values = {
        "WALLET_PROXY_UPSTREAM": upstream,
        "WALLET_PROXY_SERVER_NAME": "_",
        "WALLET_PROXY_HTTP_PORT": f"127.0.0.1:{http_port}",
        "WALLET_PROXY_HTTPS_PORT": f"127.0.0.1:{https_port}",
        "WALLET_PROXY_CERTIFICATE": str(certificate),
        "WALLET_PROXY_CERTIFICATE_KEY": str(key),
        "WALLET_PROXY_ACME_ROOT": str(directory / "acme"),
    }
    (directory / "wallet.conf").write_text(render(TEMPLATE.read_text(), values))
    # As root, nginx's workers would run as `nobody`, shut out of pytest's private directories.
    user = "user root root;" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(HARNESS.format(user=user, directory=directory))
    binary = nginx_binary()
    arguments = [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e", "stderr"]
    checked = subprocess.run([*arguments, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
    stdout_path, stderr_path = directory / "stdout.log", directory / "stderr.log"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen([*arguments, "-g", "daemon off;"], stdout=stdout, stderr=stderr)
    proxy = Proxy(process, http_port, https_port, certificate, stdout_path, stderr_path)
    try:
        _wait_for_port(proxy, https_port)
        _wait_for_port(proxy, http_port)
    except AssertionError:
        proxy.stop()
        raise
    return proxy


@pytest.fixture(scope="module")
def proxy(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    running = start_proxy(tmp_path_factory.mktemp("nginx"), f"127.0.0.1:{server.port}")
    try:
        yield running
    finally:
        running.stop()


def test_https_answers_through_the_proxy_with_hsts(proxy: Proxy) -> None:
    with proxy.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["strict-transport-security"] == "max-age=63072000"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_spoken(proxy: Proxy, version: ssl.TLSVersion) -> None:
    """(Older versions cannot be offered from here: Debian's OpenSSL refuses them client-side.)"""
    context = ssl.create_default_context(cafile=str(proxy.certificate))
    context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == version.name.replace("v1_", "v1.")


def test_plain_http_is_redirected_to_https_with_301(proxy: Proxy) -> None:
    response = httpx.get(f"http://127.0.0.1:{proxy.http_port}/v1/assets?limit=2", timeout=10)
    assert response.status_code == 301
    assert response.headers["location"] == "https://127.0.0.1/v1/assets?limit=2"


def test_forwarded_headers_and_request_id_reach_the_api(proxy: Proxy, server: Server) -> None:
    request_id = f"deploy-{uuid.uuid4()}"
    with server.client() as direct:
        wallet_id = new_wallet(direct)
    headers = {
        "Authorization": f"Bearer {server.admin_key}",
        "Idempotency-Key": str(uuid.uuid4()),
        "X-Request-ID": request_id,
        "X-Forwarded-For": "203.0.113.7",
    }
    with proxy.client() as client:
        response = client.post(f"/v1/wallets/{wallet_id}/topup", json={"amount": 5}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers.get_list("x-request-id") == [request_id]
    line = server.access_line(request_id)
    assert line["route"] == "/v1/wallets/{wallet_id}/topup"
    assert line["status"] == 201
    # nginx appended its peer to the client's X-Forwarded-For; the API trusts 127.0.0.1.
    assert line["client"] == "203.0.113.7"
    assert any(entry["request_id"] == request_id for entry in proxy.access_log())


def test_a_trailing_slash_is_a_404_through_the_proxy_not_a_redirect(proxy: Proxy) -> None:
    """The API builds no absolute URL from the Host or X-Forwarded-Proto it is told: it used to
    redirect `/healthz/` to one, and now answers 404 like any unknown path."""
    with proxy.client() as client:
        response = client.get("/healthz/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "location" not in response.headers


def test_an_insane_request_id_is_replaced(proxy: Proxy) -> None:
    with proxy.client() as client:
        response = client.get("/healthz", headers={"X-Request-ID": "x" * 129})
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def _topup_body(size: int) -> bytes:
    prefix, suffix = b'{"amount":1,"reference":"', b'"}'
    return prefix + b"r" * (size - len(prefix) - len(suffix)) + suffix


@pytest.mark.parametrize(("size", "answered_by_api"), [(BODY_SIZE_MAX, True), (BODY_SIZE_MAX + 1, False)])
def test_bodies_over_64_kib_get_413_from_nginx(
    proxy: Proxy, server: Server, size: int, answered_by_api: bool
) -> None:
    request_id = f"body-{size}-{uuid.uuid4()}"
    headers = {
        "Authorization": f"Bearer {server.admin_key}",
        "Idempotency-Key": str(uuid.uuid4()),
        "Content-Type": "application/json",
        "X-Request-ID": request_id,
    }
    body = _topup_body(size)
    assert len(body) == size
    with proxy.client() as client:
        response = client.post(f"/v1/wallets/{uuid.uuid4()}/topup", content=body, headers=headers)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["x-request-id"] == request_id
    if answered_by_api:
        assert response.status_code == 422, response.text  # the reference is too long
        assert server.access_line(request_id)["status"] == 422
    else:
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
        assert server.log_lines(request_id, timeout=0) == []


def test_metrics_are_not_published(proxy: Proxy, server: Server) -> None:
    with proxy.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert httpx.get(f"{server.base_url}/metrics", timeout=10).status_code == 200


def test_an_unreachable_api_gives_503_problem_json(tmp_path: Path) -> None:
    closed_port = free_port()
    proxy = start_proxy(tmp_path / "nginx", f"127.0.0.1:{closed_port}")
    try:
        with proxy.client() as client:
            response = client.get("/v1/assets", headers={"X-Request-ID": "down-1"})
    finally:
        proxy.stop()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-request-id"] == "down-1"
    assert response.json()["code"] == "unavailable"


def test_the_template_names_only_wallet_proxy_variables() -> None:
    """envsubst in the nginx image replaces only the names NGINX_ENVSUBST_FILTER lets through;
    a stray ${NAME} would reach nginx unreplaced."""
    names = re.findall(r"\$\{([A-Za-z_]+)\}", TEMPLATE.read_text())
    assert names and all(name.startswith("WALLET_PROXY_") for name in names)
