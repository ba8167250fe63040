"""docker-compose.yml and the Dockerfile checked against the code (no Docker engine needed):
every command the containers run exists in the `wallet` CLI, the services start in the order
db -> migrate -> seed -> api -> proxy, and the health checks really probe the service."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import WALLET, Server, free_port

REPOSITORY = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPOSITORY / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
WALLET_SERVICES = ("migrate", "seed", "api")
TEMPLATE = REPOSITORY / "deploy" / "nginx" / "wallet.conf.template"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (REPOSITORY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            instructions.append((instruction.upper(), arguments.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(index for index, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def instruction(name: str) -> str:
    found = [arguments for instruction, arguments in final_stage() if instruction == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def healthcheck_command() -> list[str]:
    arguments = instruction("HEALTHCHECK")
    command: list[str] = json.loads(arguments[arguments.index("CMD") + len("CMD") :].strip())
    return command


def assert_cli_accepts(command: list[str]) -> None:
    """`wallet SUBCOMMAND --help` works and lists every --option the command passes."""
    subcommand = [token for token in command if not token.startswith("-")][: 2 if command[0] == "db" else 1]
    result = subprocess.run(
        [WALLET, *subcommand, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"wallet {' '.join(subcommand)} --help: {result.stderr}"
    for option in (token for token in command if token.startswith("--")):
        assert re.search(rf"{re.escape(option)}\b", result.stdout), f"{option} not in `wallet {subcommand}`"


def run_probe(command: list[str], port: int, path: str) -> int:
    """Run a container health check's python command against 127.0.0.1:port; its exit code."""
    assert command[:2] == ["python", "-c"], command
    code = command[2]
    assert f"http://127.0.0.1:8000{path}" in code, code
    local = code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    return subprocess.run(
        [sys.executable, "-c", local], capture_output=True, timeout=30, check=False
    ).returncode


def test_the_services_are_the_five_expected() -> None:
    assert set(SERVICES) == {"db", "migrate", "seed", "api", "proxy"}


@pytest.mark.parametrize("service", WALLET_SERVICES)
def test_each_wallet_service_runs_a_command_the_cli_has(service: str) -> None:
    command = SERVICES[service]["command"]
    assert isinstance(command, list), "exec form, so no shell parses it"
    assert_cli_accepts(command)


def test_the_services_run_what_their_names_say() -> None:
    assert SERVICES["migrate"]["command"] == ["db", "migrate"]
    assert SERVICES["seed"]["command"] == ["db", "seed"]
    api = SERVICES["api"]["command"]
    assert api[0] == "serve"
    assert api[api.index("--host") + 1] == "0.0.0.0"
    assert int(api[api.index("--workers") + 1]) >= 2


def test_the_start_order_is_db_migrate_seed_api_proxy() -> None:
    def conditions(service: str) -> dict[str, str]:
        return {name: value["condition"] for name, value in SERVICES[service]["depends_on"].items()}

    assert "depends_on" not in SERVICES["db"]
    assert conditions("migrate") == {"db": "service_healthy"}
    assert conditions("seed") == {"migrate": "service_completed_successfully"}
    assert conditions("api") == {
        "migrate": "service_completed_successfully",
        "seed": "service_completed_successfully",
    }
    assert conditions("proxy") == {"api": "service_healthy"}
    for one_shot in ("migrate", "seed"):
        assert SERVICES[one_shot]["restart"] == "no"


def test_postgresql_is_16_or_newer_on_a_named_volume_with_pg_isready() -> None:
    database = SERVICES["db"]
    version = re.fullmatch(r"postgres:(\d+)(\.\d+)?(-\w+)?", database["image"])
    assert version is not None, database["image"]
    assert int(version.group(1)) >= 16
    volume_name = database["volumes"][0].split(":")[0]
    assert volume_name in COMPOSE["volumes"]
    assert "pg_isready" in database["healthcheck"]["test"]


def test_every_wallet_service_gets_the_database_url_from_the_environment() -> None:
    text = (REPOSITORY / "docker-compose.yml").read_text()
    passwords = set(re.findall(r"\$\{POSTGRES_PASSWORD:-([^}]*)\}", text))
    assert passwords == {"wallet-dev-password"}, "one development default, named as such"
    for service in WALLET_SERVICES:
        url = SERVICES[service]["environment"]["WALLET_DATABASE_URL"]
        assert url == "postgresql://wallet:${POSTGRES_PASSWORD:-wallet-dev-password}@db:5432/wallet"
    assert SERVICES["db"]["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-wallet-dev-password}"


def test_the_api_health_check_probes_readyz(server: Server) -> None:
    test = SERVICES["api"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert run_probe(test[1:], server.port, "/readyz") == 0
    assert run_probe(test[1:], free_port(), "/readyz") != 0


def test_the_proxy_publishes_443_and_80_and_mounts_the_tested_template() -> None:
    proxy = SERVICES["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert set(proxy["ports"]) == {"443:443", "80:80"}
    sources = [volume.split(":")[0] for volume in proxy["volumes"]]
    assert "./deploy/nginx/wallet.conf.template" in sources
    mount = next(volume for volume in proxy["volumes"] if volume.startswith("./deploy/nginx/"))
    target = mount.split(":")[1]
    assert target.startswith("/etc/nginx/templates/") and target.endswith(".template")


def test_the_proxy_environment_fills_every_template_variable() -> None:
    environment = SERVICES["proxy"]["environment"]
    names = set(re.findall(r"\$\{(WALLET_PROXY_[A-Z_]+)\}", TEMPLATE.read_text()))
    assert names <= set(environment)
    assert all(re.match(environment["NGINX_ENVSUBST_FILTER"], name) for name in names)
    assert environment["WALLET_PROXY_UPSTREAM"] == "api:8000"
    assert {environment["WALLET_PROXY_HTTP_PORT"], environment["WALLET_PROXY_HTTPS_PORT"]} == {"80", "443"}


def test_the_image_runs_wallet_serve_as_a_non_root_user() -> None:
    assert json.loads(instruction("ENTRYPOINT")) == ["wallet"]
    command = json.loads(instruction("CMD"))
    assert command[0] == "serve"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8000"
    assert_cli_accepts(command)
    user = instruction("USER").split(":")[0]
    assert user not in ("root", "0")
    assert instruction("FROM").startswith("python:3.11-slim")


def test_the_image_installs_only_the_hash_pinned_lock() -> None:
    runs = [arguments for name, arguments in dockerfile_instructions() if name == "RUN"]
    installs = [shlex.split(run) for run in runs if "pip install" in run]
    assert installs, runs
    locked = [arguments for arguments in installs if "requirements.lock" in " ".join(arguments)]
    assert len(locked) == 1 and "--require-hashes" in locked[0] and "--no-deps" in locked[0]
    assert all("--no-deps" in arguments for arguments in installs)


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    included = {
        line[1:].strip().rstrip("/")
        for line in (REPOSITORY / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for name, arguments in dockerfile_instructions():
        if name == "COPY" and not arguments.startswith("--from"):
            for source in arguments.split()[:-1]:
                assert source.rstrip("/") in included, f"COPY {source} is excluded by .dockerignore"
                assert (REPOSITORY / source).exists()


def test_the_image_health_check_probes_healthz(server: Server) -> None:
    command = healthcheck_command()
    port = json.loads(instruction("CMD"))
    assert port[port.index("--port") + 1] == "8000"
    assert run_probe(command, server.port, "/healthz") == 0
    assert run_probe(command, free_port(), "/healthz") != 0
