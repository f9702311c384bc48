"""Every write and control path of the stack asks for credentials, proven on loopback with the
stack's own configuration files: OTLP into our Collector build (config.yaml and gateway.yaml)
needs the deployment's bearer token, Prometheus exposes no lifecycle, admin or write API,
Alertmanager's API needs basic auth, and Prometheus's alerts still reach Alertmanager with
the password compose gives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from helpers import basic_auth, free_port, http_get, http_request, wait_for
from servers import (
    ALERTMANAGER_AUTH,
    ALERTMANAGER_PASSWORD,
    ALERTMANAGER_PASSWORD_HASH,
    ALERTMANAGER_USER,
    COLLECTOR_DIR,
    COMPOSE_FILE,
    Alertmanager,
    Collector,
    Exposition,
    Prometheus,
    collector_binary,
    require_binary,
)
from trading_telemetry import TelemetryConfig, init_metrics_exporter, reset

pytestmark = pytest.mark.integration

CONFIGS = ("config.yaml", "gateway.yaml")


def _attribute(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def forged_uptime(instance: str) -> ExportMetricsServiceRequest:
    """What a neighbour would send to hide a dead Order plane: its uptime, moving, under a guessable
    instance id."""
    point = NumberDataPoint(as_double=12345.0, time_unix_nano=time.time_ns(),
                            attributes=[_attribute("service", "order_plane")])  # fmt: skip
    metric = Metric(name="trading_telemetry_uptime", unit="s", gauge=Gauge(data_points=[point]))
    resource = Resource(attributes=[_attribute("service.name", "order_plane"),
                                    _attribute("service.namespace", "trading"),
                                    _attribute("service.instance.id", instance)])  # fmt: skip
    scope = ScopeMetrics(scope=InstrumentationScope(name="neighbour"), metrics=[metric])
    return ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[scope])])


def post_otlp_http(collector: Collector, request: ExportMetricsServiceRequest, headers: dict[str, str]) -> int:
    status, _, _ = http_request("POST", f"{collector.otlp_http}/v1/metrics", request.SerializeToString(),
                                {"Content-Type": "application/x-protobuf", **headers})  # fmt: skip
    return status


def call_otlp_grpc(collector: Collector, request: ExportMetricsServiceRequest, metadata: list[tuple[str, str]]) -> str:
    """The grpc status code's name of an Export call."""
    with grpc.insecure_channel(collector.otlp_grpc.removeprefix("http://")) as channel:
        try:
            MetricsServiceStub(channel).Export(request, metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            return str(error.code().name)  # type: ignore[attr-defined]
    return "OK"


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Overrides the unit tests' reset-per-test: the tests below reset what they use."""


@pytest.fixture(scope="module")
def collectors(collector_factory: Callable[..., Collector]) -> dict[str, Collector]:
    """The Collector (config.yaml) and the gateway (gateway.yaml), each with the test token."""
    return {
        "config.yaml": collector_factory(),
        "gateway.yaml": collector_factory(
            config=COLLECTOR_DIR / "gateway.yaml", env={"OTELCOL_REMOTE_WRITE_URL": "http://127.0.0.1:9/api/v1/push"}
        ),
    }


def _exported(collector: Collector, instance: str) -> bool:
    _, _, body = http_get(f"http://{collector.prometheus_target}/metrics")
    return f'instance="{instance}"' in body.decode()


def _exported_job(collector: Collector, job: str) -> bool:
    _, _, body = http_get(f"http://{collector.prometheus_target}/metrics")
    return f'job="{job}"' in body.decode()


@pytest.mark.parametrize("config", CONFIGS)
def test_otlp_http_needs_the_token(collectors: dict[str, Collector], config: str) -> None:
    """OTLP/HTTP without the token, or with a wrong one, gets 401; with it, 200."""
    collector = collectors[config]
    request = forged_uptime("host-1/order_plane")
    assert post_otlp_http(collector, request, {}) == 401
    assert post_otlp_http(collector, request, {"Authorization": "Bearer " + "0" * 64}) == 401
    assert post_otlp_http(collector, request, {"Authorization": collector.token}) == 401  # the scheme is required
    assert post_otlp_http(collector, request, {"Authorization": f"Bearer {collector.token}"}) == 200


@pytest.mark.parametrize("config", CONFIGS)
def test_otlp_grpc_needs_the_token(collectors: dict[str, Collector], config: str) -> None:
    """OTLP/grpc without the token, or with a wrong one, ends Unauthenticated; with it, OK."""
    collector = collectors[config]
    request = forged_uptime("host-1/order_plane")
    assert call_otlp_grpc(collector, request, []) == "UNAUTHENTICATED"
    assert call_otlp_grpc(collector, request, [("authorization", "Bearer " + "0" * 64)]) == "UNAUTHENTICATED"
    assert call_otlp_grpc(collector, request, [("authorization", f"Bearer {collector.token}")]) == "OK"


def test_a_refused_forgery_never_reaches_the_exporter(collectors: dict[str, Collector]) -> None:
    """A forged uptime sent without the token is not exported to Prometheus; the same sent with it is."""
    collector = collectors["config.yaml"]
    assert post_otlp_http(collector, forged_uptime("neighbour/order_plane"), {}) == 401
    assert call_otlp_grpc(collector, forged_uptime("neighbour-grpc/order_plane"), []) == "UNAUTHENTICATED"
    assert post_otlp_http(collector, forged_uptime("holder/order_plane"),
                          {"Authorization": f"Bearer {collector.token}"}) == 200  # fmt: skip
    wait_for("the token holder's series in the exporter", lambda: _exported(collector, "holder/order_plane"))
    assert not _exported(collector, "neighbour/order_plane")
    assert not _exported(collector, "neighbour-grpc/order_plane")


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_the_sdk_sends_the_token_from_otel_exporter_otlp_headers(
    collectors: dict[str, Collector], protocol: str
) -> None:
    """A plane configured with OTEL_EXPORTER_OTLP_HEADERS (as compose's demo is) pushes through; the same
    plane without it is refused and reports its exporter failing."""
    collector = collectors["config.yaml"]
    namespace = f"sdk-{protocol.replace('/', '-')}"
    env = {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
           "OTEL_RESOURCE_ATTRIBUTES": f"service.namespace={namespace}", **collector.sdk_env(protocol)}  # fmt: skip
    reset()
    try:
        metrics = init_metrics_exporter("data_plane", config=TelemetryConfig.from_env(env))
        metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
        metrics.force_flush()
        assert metrics.health()["exporters"]["otlp"]["consecutive_failures"] == 0
        wait_for("the plane's series in the exporter", lambda: _exported_job(collector, f"{namespace}/data_plane"))
        reset()
        without = {k: v for k, v in env.items() if k != "OTEL_EXPORTER_OTLP_HEADERS"}
        without["OTEL_RESOURCE_ATTRIBUTES"] = f"service.namespace={namespace}-refused"
        metrics = init_metrics_exporter("data_plane", config=TelemetryConfig.from_env(without))
        metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
        metrics.force_flush()
        assert metrics.health()["exporters"]["otlp"]["consecutive_failures"] >= 1
        assert metrics.health()["status"] == "degraded"
        assert not _exported_job(collector, f"{namespace}-refused/data_plane")
    finally:
        reset()


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("token", [None, ""])
def test_the_collector_refuses_to_start_without_a_token(config: str, token: str | None) -> None:
    """With OTEL_COLLECTOR_TOKEN unset or empty the Collector exits at once, naming the missing token."""
    env = {k: v for k, v in os.environ.items() if k != "OTEL_COLLECTOR_TOKEN"}
    if token is not None:
        env["OTEL_COLLECTOR_TOKEN"] = token
    for name in ("OTLP_GRPC", "OTLP_HTTP", "PROMETHEUS", "HEALTH"):  # free ports, were it to start
        env[f"OTELCOL_{name}_ENDPOINT"] = f"127.0.0.1:{free_port()}"
    done = subprocess.run([collector_binary(), f"--config={COLLECTOR_DIR / config}"], capture_output=True, text=True,
                          timeout=60, env=env, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "bearertokenauth: no bearer token provided" in done.stderr, done.stderr[-2000:]


# --- Prometheus ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(prometheus_factory: Callable[..., Prometheus]) -> Prometheus:
    """Prometheus with the repository's configuration and compose's flags, scraping nothing."""
    return prometheus_factory({})


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/-/reload", 403, b"Lifecycle API is not enabled"),
        ("/-/quit", 403, b"Lifecycle API is not enabled"),
        ("/api/v1/admin/tsdb/delete_series?match[]=up", 500, b"admin APIs disabled"),
        ("/api/v1/admin/tsdb/snapshot", 500, b"admin APIs disabled"),
        ("/api/v1/write", 404, b"remote write receiver needs to be enabled"),
        ("/api/v1/otlp/v1/metrics", 404, b"otlp write receiver needs to be enabled"),
    ],
)
def test_prometheus_exposes_no_control_or_write_api(
    prometheus: Prometheus, path: str, status: int, says: bytes
) -> None:
    """With compose's flags, Prometheus refuses reload, quit, the admin API, remote write and OTLP, and keeps
    running."""
    got, _, body = http_request("POST", f"{prometheus.url}{path}", b"")
    assert got == status, body
    assert says in body
    assert prometheus.alive()
    assert http_get(f"{prometheus.url}/-/ready")[0] == 200


def test_prometheus_reloads_on_sighup(prometheus_factory: Callable[..., Prometheus], tmp_path: Path) -> None:
    """SIGHUP, the reload docs/operations.md gives (`docker compose kill -s HUP prometheus`), re-reads the rules."""

    def rules(*names: str) -> Path:
        groups = [{"name": n, "rules": [{"record": f"{n}:one", "expr": "vector(1)"}]} for n in names]
        (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
        return tmp_path / "rules.yml"

    prom = prometheus_factory({}, rule_files=[rules("before")])
    groups = lambda: {g["name"] for g in prom.api("rules")["groups"]}  # noqa: E731
    assert groups() == {"before"}
    rules("before", "after")
    assert prom.proc is not None
    prom.proc.send_signal(signal.SIGHUP)
    wait_for("the rules re-read", lambda: groups() == {"before", "after"})


def test_a_scrape_past_the_label_limits_fails_whole(prometheus_factory: Callable[..., Prometheus]) -> None:
    """A target whose series carry a label value longer than the job's limit is marked down and none of its
    samples is stored; a well-formed target beside it is scraped."""
    limit = next(j for j in yaml.safe_load((COMPOSE_FILE.parent / "prometheus" / "prometheus.yml").read_text())
                 ["scrape_configs"] if j["job_name"] == "trading-planes")["label_value_length_limit"]  # fmt: skip
    oversized = Exposition(f'forged_total{{symbol="{"X" * (limit + 1)}"}} 1\nforged_ok_total 1\n')
    fine = Exposition("fine_total 1\n")
    try:
        prom = prometheus_factory({"planes": [oversized.target, fine.target]})

        def health() -> dict[str, dict[str, str]]:
            """The planes' targets scraped at least once, by URL."""
            active = prom.api("targets", state="active")["activeTargets"]
            planes = [t for t in active if t["labels"]["job"] == "trading-planes"]
            return {t["scrapeUrl"]: t for t in planes if t["health"] != "unknown"}

        targets = wait_for("both targets scraped", lambda: len(h := health()) == 2 and h)
        bad, good = (targets[f"http://{t.target}/metrics"] for t in (oversized, fine))
        assert bad["health"] == "down"
        assert "label_value_length_limit" in bad["lastError"], bad["lastError"]
        assert good["health"] == "up"
        assert prom.query("forged_ok_total") == []
        assert prom.query("fine_total")
    finally:
        oversized.close()
        fine.close()


# --- Alertmanager -------------------------------------------------------------------


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    server = Alertmanager(tmp_path_factory.mktemp("alertmanager"), {})
    yield server
    server.stop()


def _silence(days: int = 30) -> bytes:
    now = datetime.now(timezone.utc)
    return json.dumps({
        "matchers": [{"name": "alertname", "value": ".+", "isRegex": True}],
        "startsAt": now.isoformat(), "endsAt": (now + timedelta(days=days)).isoformat(),
        "createdBy": "neighbour", "comment": "quiet",
    }).encode()  # fmt: skip


def test_alertmanager_refuses_silences_and_reads_without_credentials(alertmanager: Alertmanager) -> None:
    """A 30-day silence of every alert without credentials, or with a wrong password, gets 401 and is not
    created; the API's reads get 401 too; with the password it is created."""
    url = f"{alertmanager.url}/api/v2/silences"
    json_body = {"Content-Type": "application/json"}
    assert http_request("POST", url, _silence(), json_body)[0] == 401
    wrong = basic_auth(ALERTMANAGER_USER, "not-the-password")
    assert http_request("POST", url, _silence(), {**json_body, **wrong})[0] == 401
    assert http_get(url)[0] == 401
    assert http_get(f"{alertmanager.url}/api/v2/alerts")[0] == 401
    status, _, body = http_get(url, ALERTMANAGER_AUTH)
    assert status == 200
    assert json.loads(body) == [], "a refused silence was created"
    status, _, body = http_request("POST", url, _silence(), {**json_body, **ALERTMANAGER_AUTH})
    assert status == 200, body
    created = json.loads(body)["silenceID"]
    assert [s["id"] for s in json.loads(http_get(url, ALERTMANAGER_AUTH)[2])] == [created]


def test_compose_alertmanager_command_asks_for_credentials_and_runs_no_cluster(tmp_path: Path) -> None:
    """Compose's Alertmanager command, run by busybox with the repository's files and the hash from the
    environment, starts an Alertmanager that refuses an unauthenticated silence, takes one with the password,
    and reports its cluster disabled (no gossip port to join)."""
    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["alertmanager"]
    (script,) = service["command"]
    port = free_port()
    binary = require_binary("alertmanager")
    # The container's /tmp first: the repository itself may be under /tmp.
    script = script.replace("/tmp/", f"{tmp_path}/").replace(
        "--storage.path=/alertmanager", f"--storage.path={tmp_path}"
    )
    script = script.replace("/etc/alertmanager", str(COMPOSE_FILE.parent / "prometheus"))
    script = script.replace("exec /bin/alertmanager", f"exec {binary} --web.listen-address=127.0.0.1:{port}")
    bin_dir = _busybox_bin(tmp_path, "awk")
    env = {"PATH": str(bin_dir), "ALERTMANAGER_PASSWORD_HASH": ALERTMANAGER_PASSWORD_HASH}
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen([require_binary("busybox", "busybox"), "sh", "-c", script], env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("Alertmanager started by compose's command",
                 lambda: proc.poll() is None and http_get(f"{url}/-/ready", ALERTMANAGER_AUTH)[0] == 200)  # fmt: skip
        json_body = {"Content-Type": "application/json"}
        assert http_request("POST", f"{url}/api/v2/silences", _silence(), json_body)[0] == 401
        status, _, body = http_request("POST", f"{url}/api/v2/silences", _silence(), {**json_body, **ALERTMANAGER_AUTH})
        assert status == 200, body
        status, _, body = http_get(f"{url}/api/v2/status", ALERTMANAGER_AUTH)
        assert status == 200
        assert json.loads(body)["cluster"]["status"] == "disabled"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def _busybox_bin(tmp_path: Path, *applets: str) -> Path:
    """A directory of busybox applets, first on PATH: the tools of the images' busybox."""
    busybox = require_binary("busybox", "busybox")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for applet in applets:
        (bin_dir / applet).symlink_to(busybox)
    return bin_dir


def test_alertmanager_healthcheck_passes_with_the_password(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """Compose's Alertmanager healthcheck, run by busybox, passes with ALERTMANAGER_PASSWORD and fails
    with a wrong one."""
    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["alertmanager"]
    kind, script = service["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    script = script.replace("$$", "$").replace("http://localhost:9093", alertmanager.url)
    bin_dir = _busybox_bin(tmp_path, "wget", "base64", "tr")

    def check(password: str) -> int:
        env = {"PATH": str(bin_dir), "ALERTMANAGER_PASSWORD": password}
        return subprocess.run([require_binary("busybox", "busybox"), "sh", "-c", script], env=env,
                              capture_output=True, timeout=30, check=False).returncode  # fmt: skip

    assert check(ALERTMANAGER_PASSWORD) == 0
    assert check("not-the-password") != 0


def test_prometheus_entrypoint_writes_the_password_file(tmp_path: Path) -> None:
    """Compose's Prometheus entrypoint, run by busybox, writes ALERTMANAGER_PASSWORD exactly (no newline,
    quotes and spaces kept) to a file only its user can read, then runs Prometheus with compose's flags."""
    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["prometheus"]
    shell, flag, script, name = service["entrypoint"]
    assert (shell, flag) == ("/bin/sh", "-c")
    password_file = tmp_path / "alertmanager.password"
    script = script.replace("$$", "$").replace("/tmp/alertmanager.password", str(password_file))
    script = script.replace("exec /bin/prometheus", "exec echo")
    bin_dir = _busybox_bin(tmp_path, "echo")
    password = "a b'c\"d$e\\f"
    done = subprocess.run([require_binary("busybox", "busybox"), "sh", "-c", script, name, *service["command"]],
                          env={"PATH": str(bin_dir), "ALERTMANAGER_PASSWORD": password}, capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == service["command"]
    assert password_file.read_text() == password
    assert password_file.stat().st_mode & 0o077 == 0


# --- Prometheus to Alertmanager -------------------------------------------------------


def test_alerts_reach_alertmanager_with_the_password_only(
    prometheus_factory: Callable[..., Prometheus], alertmanager: Alertmanager, tmp_path: Path
) -> None:
    """A Prometheus with Alertmanager's password delivers its alert; one with a wrong password is refused
    (its notifications fail) and its alert never appears."""
    rules = {}
    for name in ("SentWithThePassword", "SentWithAWrongPassword"):
        rules[name] = tmp_path / f"{name}.yml"
        # Pending first: Prometheus finds its Alertmanager within about 5 s of starting, and an alert that
        # fires before is dropped (and sent again only after a minute).
        rule = {"alert": name, "expr": "vector(1)", "for": "15s", "labels": {"severity": "info"}}
        group = {"name": name, "rules": [rule]}
        rules[name].write_text(yaml.safe_dump({"groups": [group]}))
    target = [f"127.0.0.1:{alertmanager.port}"]
    prometheus_factory({}, rule_files=[rules["SentWithThePassword"]], alertmanagers=target)
    wrong = prometheus_factory({}, rule_files=[rules["SentWithAWrongPassword"]], alertmanagers=target,
                               alertmanager_password="not-the-password")  # fmt: skip

    def names() -> set[str]:
        return {a["labels"]["alertname"] for a in alertmanager.alerts()}

    wait_for("the alert sent with the password", lambda: "SentWithThePassword" in names(), timeout=90)

    def errors() -> float:
        _, _, body = http_get(f"{wrong.url}/metrics")
        lines = [x for x in body.decode().splitlines() if x.startswith("prometheus_notifications_errors_total{")]
        return sum(float(x.split()[-1]) for x in lines)

    wait_for("the wrong password's notifications to fail", lambda: errors() >= 1, timeout=60)
    assert "SentWithAWrongPassword" not in names()
