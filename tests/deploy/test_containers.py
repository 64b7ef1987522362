"""docker-compose.yml and the Dockerfile, checked against the Compose specification and the
code (there is no Docker engine to run them here)."""

from __future__ import annotations

import json
import re
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from graphql_chat.cli import cli
from graphql_chat.config import Settings

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    jsonschema.validate(compose, schema)


def test_environment_names_are_settings(compose: dict[str, Any]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    environment = compose["x-app-environment"]
    assert set(environment) <= fields, set(environment) - fields
    settings = Settings(**{k.lower(): v for k, v in environment.items()})
    settings.check()  # the combination is one the product accepts
    assert settings.distributed


def test_commands_exist(compose: dict[str, Any]) -> None:
    commands = {command.name or command.callback.__name__ for command in cli.registered_commands}  # type: ignore[union-attr]
    for name in ("migrate", "api", "worker"):
        assert compose["services"][name]["command"][0] in commands


def test_ports_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["api"]["ports"] == ["3000:3000", "5555:3000"]
    assert Settings().port == 3000
    assert "PORT=3000" in (ROOT / "Dockerfile").read_text()
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        for engine in ("redis", "rabbitmq", "elasticsearch"):
            assert depends[engine] == {"condition": "service_healthy"}
            assert "healthcheck" in services[engine]
    assert services["migrate"]["depends_on"]["mysql"] == {"condition": "service_healthy"}


def test_versions_match_the_tested_ones(compose: dict[str, Any]) -> None:
    image = compose["services"]["elasticsearch"]["image"]
    server_version = image.rsplit(":", 1)[1]
    tested = re.search(
        r"ELASTICSEARCH_VERSION:-([\d.]+)", (ROOT / "scripts/services.sh").read_text()
    )
    assert tested and tested.group(1) == server_version
    client_version = version("elasticsearch")
    assert server_version.split(".")[0] == client_version.split(".")[0]
    assert "--appendfsync" in compose["services"]["redis"]["command"]
    assert "always" in compose["services"]["redis"]["command"]
    assert compose["services"]["rabbitmq"]["image"].endswith("-management")


def test_image_is_slim_and_not_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    user = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "COPY alembic ./alembic" in dockerfile and "COPY alembic.ini" in dockerfile


def test_prometheus_scrapes_the_api_and_every_worker(compose: dict[str, Any]) -> None:
    service = compose["services"]["prometheus"]
    mounted = {c["source"]: c["target"] for c in service["configs"]}
    assert (ROOT / compose["configs"]["prometheus"]["file"]).resolve() == (
        ROOT / "deploy/prometheus.yml"
    )
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    assert mounted["prometheus"] == "/etc/prometheus/prometheus.yml"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["graphql-chat-api"]
    assert api["static_configs"][0]["targets"] == [f"api:{Settings().port}"]
    # The API listens on all interfaces: its metrics need the admin token, mounted for it.
    assert api["authorization"]["credentials_file"] == mounted["admin-token"]
    assert "ADMIN_TOKEN" in compose["configs"]["admin-token"]["content"]
    worker = jobs["graphql-chat-worker"]["dns_sd_configs"][0]
    port = int(compose["x-app-environment"]["WORKER_METRICS_PORT"])
    assert worker["names"] == ["worker"] and worker["port"] == port
    assert Settings().worker_metrics_port == port


def test_the_dashboard_reads_only_series_the_product_exports() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from graphql_chat import metrics

    families = [
        family
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.describe()
    ]
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = {
        family.name + suffix for family in families for suffix in suffixes.get(family.type, ("",))
    }
    dashboard = json.loads((ROOT / "deploy/grafana/graphql-chat.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in expressions for name in re.findall(r"graphql_chat_\w+", e)}
    assert used <= exported, used - exported
    # Every series the product exports has a panel.
    assert {f.name for f in families} == {
        max((f.name for f in families if name.startswith(f.name)), key=len) for name in used
    }
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
