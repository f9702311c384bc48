"""Real servers for integration tests, on free loopback ports: Prometheus (built by
prometheus/build.sh) running the repository's prometheus/prometheus.yml, Alertmanager
(built by the same script) and our own Collector build running otel_collector/config.yaml,
each with the credentials compose gives it from .env."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import pytest
import yaml

from helpers import basic_auth, free_port, http_get, wait_for

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "prometheus"
COLLECTOR_DIR = ROOT / "otel_collector"
COMPOSE_FILE = ROOT / "docker-compose.yml"

COLLECTOR_TOKEN = secrets.token_hex(32)
"""OTEL_COLLECTOR_TOKEN of the Collectors the tests start, made as .env.example says."""

ALERTMANAGER_USER = "alertmanager"
ALERTMANAGER_PASSWORD = "alertmanager-test-password"  # tests only
ALERTMANAGER_PASSWORD_HASH = "$2a$10$ezyvd18UeKz4WUKehWHeduUcndTTh0NBM7JWbTCMCQNnbEtksuoh2"
"""bcrypt (cost 10) of ALERTMANAGER_PASSWORD: ALERTMANAGER_PASSWORD_HASH of the tests' .env."""
ALERTMANAGER_AUTH = basic_auth(ALERTMANAGER_USER, ALERTMANAGER_PASSWORD)
TEST_PASSWORD, TEST_PASSWORD_HASH = ALERTMANAGER_PASSWORD, ALERTMANAGER_PASSWORD_HASH
"""The tests' one password and its bcrypt hash, for any server's basic auth."""


BUILT = {"prometheus": "prometheus", "promtool": "prometheus", "alertmanager": "alertmanager", "amtool": "alertmanager"}
"""The binaries the tests take from prometheus/build.sh (never from PATH), and the build each comes from."""


def _missing(message: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; under CI=true a real-component test must not skip")
    pytest.skip(message)


@cache
def _built(server: str) -> dict[str, str] | str:
    """``bash prometheus/build.sh SERVER --cached``: its binaries by name, or why there are none."""
    script = PROMETHEUS_DIR / "build.sh"
    done = subprocess.run(["bash", str(script), server, "--cached"], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        why = done.stderr.strip()[-500:] or f"{script.relative_to(ROOT)} exited with {done.returncode}"
        return why if "make servers" in why else f"{why}: run `make servers`"
    paths = done.stdout.split()
    return {Path(path).name: path for path in paths}


def require_binary(name: str, package: str | None = None) -> str:
    """The binary's path: Prometheus, promtool, Alertmanager and amtool as prometheus/build.sh built them
    (once per session), anything else from PATH (Debian's ``package``). Missing: a failure under CI=true
    (`make test` builds and installs them first), else a skip saying what to run."""
    if name in BUILT:
        built = _built(BUILT[name])
        if isinstance(built, str):
            _missing(built)
        return built[name]
    path = shutil.which(name)
    if path:
        return path
    _missing(f"{name} is not installed (Debian package: apt-get install {package or name})")


class Process:
    """A server process with its log in the work directory."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    def _spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        log.close()

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise AssertionError(f"{self.name} is not running; log:\n{tail}")
        return True

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class PromQLClient:
    """The Prometheus HTTP API of a server at ``url`` + ``api_root`` (Prometheus and Thanos
    Query: /api/v1), sending ``auth`` (headers) with every request."""

    url: str
    api_root = "/api/v1"
    auth: Mapping[str, str] = MappingProxyType({})

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        status, _, body = http_get(f"{self.url}{self.api_root}/{path}?{query}", self.auth)
        reply = json.loads(body)
        assert status == 200, reply
        assert reply["status"] == "success", reply
        return reply["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result = self.api("query", query=promql)["result"]
        assert isinstance(result, list)
        return result

    def value(self, promql: str) -> float | None:
        """The single value of ``promql`` now, or None if it returns nothing."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def series(self, match: str) -> list[dict[str, str]]:
        found = self.api("series", **{"match[]": match, "start": str(time.time() - 3600)})
        assert isinstance(found, list)
        return found


def compose_prometheus_flags() -> list[str]:
    """The flags docker-compose.yml gives Prometheus, less those naming its paths in the container."""
    command = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["prometheus"]["command"]
    paths = ("--config.file=", "--storage.tsdb.path=", "--storage.tsdb.retention.time=")
    return [flag for flag in command if not flag.startswith(paths)]


class Prometheus(Process, PromQLClient):
    """Prometheus with the repository's configuration and compose's flags: its jobs, limits,
    relabelling and rule files, with the targets of this test and a 1 s scrape interval,
    sending alerts with Alertmanager's password (``alertmanager_password``). ``flags`` are
    added to compose's, ``config_changes`` update sections of prometheus.yml (a list, such
    as ``remote_write``, is the whole section), and
    ``web_user`` puts every path behind basic auth for that user with the tests' password
    (docs/operations.md: "Straight into Prometheus over OTLP")."""

    def __init__(
        self,
        workdir: Path,
        targets: Mapping[str, Sequence[str]],
        rule_files: Sequence[Path] = (),
        alertmanagers: Sequence[str] = (),
        alertmanager_password: str = ALERTMANAGER_PASSWORD,
        flags: Sequence[str] = (),
        config_changes: Mapping[str, Any] | None = None,
        web_user: str | None = None,
    ) -> None:
        super().__init__("prometheus", workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        web: list[str] = []
        if web_user:
            (workdir / "web.yml").parent.mkdir(parents=True, exist_ok=True)
            (workdir / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {web_user: TEST_PASSWORD_HASH}}))
            web = [f"--web.config.file={workdir / 'web.yml'}"]
            self.auth = basic_auth(web_user, TEST_PASSWORD)
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
        config["rule_files"] = [str(p) for p in rule_files]
        for section, changes in (config_changes or {}).items():
            if isinstance(changes, list):  # a list section (remote_write): given whole
                config[section] = changes
            else:
                config.setdefault(section, {}).update(changes)
        for job in config["scrape_configs"]:
            job["scrape_interval"] = "1s"
        (workdir / "targets").mkdir(parents=True, exist_ok=True)
        (workdir / "alertmanager.password").write_text(alertmanager_password)  # compose: from .env at start
        for alertmanager in config["alerting"]["alertmanagers"]:
            alertmanager["basic_auth"]["password_file"] = str(workdir / "alertmanager.password")
        for name in ("collector", "planes"):
            entries = [{"targets": list(targets.get(name, ()))}] if targets.get(name) else []
            (workdir / "targets" / f"{name}.json").write_text(json.dumps(entries))
        (workdir / "targets" / "alertmanager.json").write_text(json.dumps([{"targets": list(alertmanagers)}]))
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self._spawn(
            [
                require_binary("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *compose_prometheus_flags(),
                *flags,
                *web,
                "--log.level=warn",
            ]
        )
        ready = f"{self.url}/-/ready"
        wait_for("Prometheus to be ready", lambda: self.alive() and http_get(ready, self.auth)[0] == 200)

    def wait_for_scrapes(self, targets: int, samples: int = 3) -> None:
        """Until ``targets`` targets are up and each was scraped at least ``samples`` times."""

        def scraped() -> bool:
            counts = self.query('count_over_time(up{job!="prometheus"}[5m])')
            ups = self.query('up{job!="prometheus"} == 1')
            return (
                len(ups) == targets and len(counts) == targets and all(float(c["value"][1]) >= samples for c in counts)
            )

        wait_for(f"{targets} targets scraped {samples} times", scraped, timeout=60)


def _go_build(script: Path, what: str) -> str:
    """The binary a build script prints (building it, or reusing its cached build)."""
    if shutil.which("go") is None:
        message = f"Go is not installed: it builds {what} ({script.relative_to(ROOT)})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; under CI=true a real-component test must not skip")
        pytest.skip(message)
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@cache
def collector_binary() -> str:
    """Our Collector, built from otel_collector/builder-config.yaml (or reused)."""
    return _go_build(COLLECTOR_DIR / "build.sh", "the Collector")


@cache
def thanos_binary() -> str:
    """Thanos (receive, query, rule, sidecar), built by thanos/build.sh (or reused)."""
    return _go_build(ROOT / "thanos" / "build.sh", "Thanos")


class Collector(Process):
    """Our Collector build running otel_collector/config.yaml on free loopback ports, its
    OTLP receivers asking for COLLECTOR_TOKEN; stop() and start() keep the ports, as a
    restarted Collector would."""

    def __init__(self, workdir: Path, config: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        super().__init__("collector", workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = config or COLLECTOR_DIR / "config.yaml"
        self.env = dict(env or {})
        self.token = self.env.setdefault("OTEL_COLLECTOR_TOKEN", COLLECTOR_TOKEN)
        self.ports = {name: free_port() for name in ("grpc", "http", "prometheus", "health", "traces")}
        self.otlp_http = f"http://127.0.0.1:{self.ports['http']}"
        self.otlp_grpc = f"http://127.0.0.1:{self.ports['grpc']}"
        self.prometheus_target = f"127.0.0.1:{self.ports['prometheus']}"
        self.start()

    @property
    def otlp_headers(self) -> str:
        """OTEL_EXPORTER_OTLP_HEADERS for a client of this Collector (compose's demo sends the same)."""
        return f"authorization=Bearer%20{self.token}"

    def sdk_env(self, protocol: str = "http/protobuf") -> dict[str, str]:
        """The OTEL_EXPORTER_OTLP_* variables that point a plane's SDK at this Collector, token included."""
        endpoint = self.otlp_http if protocol == "http/protobuf" else self.otlp_grpc
        return {
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_HEADERS": self.otlp_headers,
        }

    def start(self) -> None:
        p = self.ports
        env = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{p['grpc']}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{p['http']}",
            "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{p['prometheus']}",
            "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{p['health']}",
            "OTELCOL_TRACES_ENDPOINT": f"127.0.0.1:{p['traces']}",  # no tracing backend in tests
            "OTELCOL_LOG_LEVEL": "warn",
            **self.env,
        }
        self._spawn([collector_binary(), f"--config={self.config}"], env)
        health = f"http://127.0.0.1:{p['health']}/"
        wait_for("the Collector to be healthy", lambda: self.alive() and http_get(health)[0] == 200, timeout=60)


RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
"""prometheus/rules/*.yml: what Prometheus loads, and Thanos Ruler."""

ALERTMANAGER_TEMPLATE = PROMETHEUS_DIR / "alertmanager.yml"


RENDER_ENV_AWK = PROMETHEUS_DIR / "render-env.awk"
ALERTMANAGER_WEB_TEMPLATE = PROMETHEUS_DIR / "alertmanager-web.yml"
RENDERED_VARIABLES = (
    "ALERT_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "SLACK_CHANNEL", "PAGERDUTY_ROUTING_KEY", "PAGERDUTY_URL",
    "SMTP_SMARTHOST", "SMTP_FROM", "SMTP_USERNAME", "SMTP_PASSWORD", "ALERT_EMAIL_TO", "ALERTMANAGER_PASSWORD_HASH",
)  # fmt: skip


def render_env(template: str, env: Mapping[str, str], awk: Sequence[str] = ("awk",)) -> str:
    """``template`` rendered by prometheus/render-env.awk, the code compose runs, with
    ``env`` as the receivers' and the password hash's variables (the others unset)."""
    base = {k: v for k, v in os.environ.items() if k not in RENDERED_VARIABLES}
    done = subprocess.run(
        [*awk, "-f", str(RENDER_ENV_AWK)],
        input=template.encode(), capture_output=True, timeout=30, check=True, env={**base, **env},
    )  # fmt: skip
    return done.stdout.decode()


class Alertmanager(Process):
    """Alertmanager (prometheus/build.sh) running prometheus/alertmanager.yml rendered with ``env``, and
    prometheus/alertmanager-web.yml with the test password's hash: every request needs
    ALERTMANAGER_AUTH."""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        super().__init__("alertmanager", workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(render_env(ALERTMANAGER_TEMPLATE.read_text(), env))
        self.web_config = workdir / "web.yml"
        web_env = {"ALERTMANAGER_PASSWORD_HASH": ALERTMANAGER_PASSWORD_HASH}
        self.web_config.write_text(render_env(ALERTMANAGER_WEB_TEMPLATE.read_text(), web_env))
        self._spawn(
            [
                require_binary("alertmanager"),
                f"--config.file={self.config}",
                f"--web.config.file={self.web_config}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip port: a single instance
                "--log.level=warn",
            ]
        )
        ready = f"{self.url}/-/ready"
        wait_for("Alertmanager to be ready", lambda: self.alive() and http_get(ready, ALERTMANAGER_AUTH)[0] == 200)

    def alerts(self) -> list[dict[str, Any]]:
        status, _, body = http_get(f"{self.url}/api/v2/alerts", ALERTMANAGER_AUTH)
        assert status == 200, body
        found = json.loads(body)
        assert isinstance(found, list)
        return found


class Exposition:
    """A real HTTP server on loopback serving a fixed Prometheus text exposition at /metrics."""

    def __init__(self, text: str) -> None:
        body = text.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Webhook:
    """A real HTTP server on loopback that keeps what Alertmanager posts to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the scale-out path: Thanos, and a Prometheus HA pair beside it ---------------------

THANOS_DIR = ROOT / "thanos"
_OWN_FLAGS = (
    "--http-address=", "--grpc-address=", "--remote-write.address=", "--tsdb.path=", "--data-dir=",
    "--endpoint.sd-config-file=", "--rule-file=", "--query=", "--alertmanagers.config-file=",
)  # fmt: skip


def compose_thanos_flags(service: str) -> list[str]:
    """The flags docker-compose.yml gives a Thanos service (its command less the
    subcommand), less those naming addresses and paths in the container."""
    command = yaml.safe_load(COMPOSE_FILE.read_text())["services"][service]["command"]
    return [flag for flag in command[1:] if not flag.startswith(_OWN_FLAGS)]


class Thanos(Process):
    """One Thanos component (``thanos COMPONENT``) with ``flags``, on free loopback ports:
    HTTP at ``url``, its gRPC StoreAPI at ``grpc``. ``entrypoint`` replaces ``thanos``
    (it gets the component and flags as arguments), with ``env``."""

    def __init__(
        self,
        component: str,
        workdir: Path,
        flags: Sequence[str],
        port: int | None = None,
        entrypoint: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"thanos-{component}", workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc = f"127.0.0.1:{free_port()}"
        addresses = [f"--http-address=127.0.0.1:{self.port}", f"--grpc-address={self.grpc}"]
        argv = [*(entrypoint or [thanos_binary()]), component, *flags, *addresses, "--log.level=warn"]
        self._spawn(argv, env)
        ready = f"{self.url}/-/ready"
        wait_for(f"Thanos {component} to be ready", lambda: self.alive() and http_get(ready)[0] == 200, timeout=60)


class ThanosReceive(Thanos):
    """Thanos Receive with compose's flags: one node (no hashring), taking remote writes at ``push_url``."""

    def __init__(self, workdir: Path) -> None:
        remote_write = f"127.0.0.1:{free_port()}"
        self.push_url = f"http://{remote_write}/api/v1/receive"
        flags = [
            f"--tsdb.path={workdir / 'data'}",
            f"--remote-write.address={remote_write}",
            f"--receive.capnproto-address=127.0.0.1:{free_port()}",  # replication between Receives; 19391 by default
        ]
        super().__init__("receive", workdir, [*compose_thanos_flags("thanos-receive"), *flags])


class ThanosQuery(Thanos, PromQLClient):
    """Thanos Query with compose's flags over ``endpoints`` (gRPC addresses), given in a copy
    of thanos/endpoints.yml; HTTP on ``port`` if given (a Ruler started first needs it)."""

    def __init__(self, workdir: Path, endpoints: Sequence[str], port: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((THANOS_DIR / "endpoints.yml").read_text())
        config["endpoints"] = [{"address": address} for address in endpoints]
        config_file = workdir / "endpoints.yml"
        config_file.write_text(yaml.safe_dump(config))
        flags = [*compose_thanos_flags("thanos-query"), f"--endpoint.sd-config-file={config_file}"]
        super().__init__("query", workdir, flags, port)
        wanted = set(endpoints)
        wait_for(f"Query to reach {sorted(wanted)}", lambda: self.endpoints() >= wanted, timeout=60, interval=0.5)

    def endpoints(self) -> set[str]:
        """The endpoints Query is connected to (its /api/v1/stores), without an error."""
        stores: dict[str, list[dict[str, Any]]] = self.api("stores") or {}
        return {s["name"] for group in stores.values() for s in group if not s.get("lastError")}


class ThanosRule(Thanos):
    """Thanos Ruler with compose's flags: prometheus/rules/*.yml evaluated through the Query
    at ``query`` (host:port), alerts sent to the Alertmanager at ``alertmanager``
    (host:port) as a copy of thanos/alertmanagers.yml says, with ``alertmanager_password``.
    It starts through compose's entrypoint, run by busybox (the image's shell), which
    writes the password file from ALERTMANAGER_PASSWORD."""

    def __init__(
        self, workdir: Path, query: str, alertmanager: str, alertmanager_password: str = ALERTMANAGER_PASSWORD
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        password_file = workdir / "alertmanager.password"
        _, _, script, arg0 = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["thanos-rule"]["entrypoint"]
        script = script.replace("$$", "$")  # compose unescapes $$ when it runs the command
        script = script.replace("/tmp/alertmanager.password", str(password_file))
        script = script.replace("exec /bin/thanos ", f"exec {thanos_binary()} ")
        entrypoint = [require_binary("busybox", "busybox"), "sh", "-c", script, arg0]
        config = yaml.safe_load((THANOS_DIR / "alertmanagers.yml").read_text())
        for entry in config["alertmanagers"]:
            entry["static_configs"] = [alertmanager]
            entry["http_config"]["basic_auth"]["password_file"] = str(password_file)
        config_file = workdir / "alertmanagers.yml"
        config_file.write_text(yaml.safe_dump(config))
        flags = [
            f"--data-dir={workdir / 'data'}",
            f"--rule-file={PROMETHEUS_DIR / 'rules'}/*.yml",
            f"--query={query}",
            f"--alertmanagers.config-file={config_file}",
        ]
        env = {"ALERTMANAGER_PASSWORD": alertmanager_password}
        super().__init__("rule", workdir, [*compose_thanos_flags("thanos-rule"), *flags], None, entrypoint, env)
        assert password_file.read_text() == alertmanager_password
        assert password_file.stat().st_mode & 0o077 == 0, "the password file is its user's only"


class PrometheusReplica(Process, PromQLClient):
    """One replica of a Prometheus HA pair: Prometheus 3 running prometheus/prometheus.yml
    and compose's flags, with the external labels ``cluster`` and ``replica``, scraping
    ``targets`` every second. No rules and no Alertmanager: those run once, in Thanos Ruler."""

    def __init__(self, workdir: Path, replica: str, targets: Mapping[str, Sequence[str]]) -> None:
        super().__init__(f"prometheus-{replica}", workdir)
        (workdir / "targets").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = workdir / "data"
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"].update(
            scrape_interval="1s", scrape_timeout="1s", external_labels={"cluster": "desk", "replica": replica}
        )
        del config["rule_files"], config["alerting"]
        for job in config["scrape_configs"]:
            job["scrape_interval"] = "1s"
            for static in job.get("static_configs", []):
                static["targets"] = [f"127.0.0.1:{self.port}"]  # itself, not whatever listens on 9090
        for name in ("collector", "planes"):
            entries = [{"targets": list(targets.get(name, ()))}] if targets.get(name) else []
            (workdir / "targets" / f"{name}.json").write_text(json.dumps(entries))
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self._spawn(
            [
                require_binary("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *compose_prometheus_flags(),
                "--log.level=warn",
            ]
        )
        ready = f"{self.url}/-/ready"
        wait_for(f"Prometheus {replica} to be ready", lambda: self.alive() and http_get(ready)[0] == 200)


class ThanosSidecar(Thanos):
    """The Thanos Sidecar beside a Prometheus replica: its data, as a StoreAPI, to Query."""

    def __init__(self, workdir: Path, prometheus: PrometheusReplica) -> None:
        flags = [f"--prometheus.url={prometheus.url}", f"--tsdb.path={prometheus.data}"]
        super().__init__("sidecar", workdir, flags)


JAEGER_DIR = ROOT / "jaeger"


@cache
def jaeger_binary() -> str:
    """Jaeger v2, built by jaeger/build.sh (or reused)."""
    return _go_build(JAEGER_DIR / "build.sh", "Jaeger")


def _attribute(attributes: Sequence[Mapping[str, Any]], key: str) -> Any:
    """A value from an OTLP JSON attribute list (the first of its typed fields)."""
    for attribute in attributes:
        if attribute["key"] == key:
            return next(iter(attribute["value"].values()), None)
    return None


class Jaeger(Process):
    """Jaeger v2 running jaeger/config.yaml (OTLP receivers, memory storage, query service)
    on free loopback ports. ``otlp_grpc`` is what the Collector's OTELCOL_TRACES_ENDPOINT
    names in compose (jaeger:4317); ``url`` is the query service (UI and /api/v3)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("jaeger", workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in ("grpc", "http", "query", "query_grpc", "health")}
        p = self.ports
        self.otlp_grpc = f"127.0.0.1:{p['grpc']}"
        self.url = f"http://127.0.0.1:{p['query']}"
        env = {
            "JAEGER_OTLP_GRPC_ENDPOINT": self.otlp_grpc,
            "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{p['http']}",
            "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{p['query']}",
            "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{p['query_grpc']}",
            "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{p['health']}",
            "JAEGER_LOG_LEVEL": "warn",
        }
        self._spawn([jaeger_binary(), f"--config={JAEGER_DIR / 'config.yaml'}"], env)
        self.health_url = f"http://127.0.0.1:{p['health']}/status"
        wait_for("Jaeger to be healthy", lambda: self.alive() and http_get(self.health_url)[0] == 200, timeout=60)

    def _spans(self, path: str, **params: Any) -> list[dict[str, Any]] | None:
        """The spans an /api/v3 query returns, each with its resource's ``service``; None if 404."""
        query = urllib.parse.urlencode(params)
        status, _, body = http_get(f"{self.url}/api/v3/{path}" + (f"?{query}" if query else ""))
        if status == 404:
            return None
        assert status == 200, body[:500]
        spans = []
        for resource_spans in json.loads(body)["result"]["resourceSpans"]:
            service = _attribute(resource_spans["resource"]["attributes"], "service.name")
            for scope_spans in resource_spans["scopeSpans"]:
                spans.extend({**span, "service": service} for span in scope_spans["spans"])
        return spans

    def services(self) -> list[str]:
        status, _, body = http_get(f"{self.url}/api/v3/services")
        assert status == 200, body[:500]
        found = json.loads(body).get("services", [])
        assert isinstance(found, list)
        return found

    def trace(self, trace_id: str) -> list[dict[str, Any]] | None:
        """The spans Jaeger holds of the trace (hex id), or None if it has none."""
        return self._spans(f"traces/{trace_id}")

    def find_traces(self, service: str, since: float, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
        """The spans of up to ``limit`` traces with spans of ``service`` started since ``since``
        (a Unix time), by trace id."""
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        spans = self._spans(
            "traces",
            **{
                "query.service_name": service,
                "query.start_time_min": time.strftime(fmt, time.gmtime(since - 1)),
                "query.start_time_max": time.strftime(fmt, time.gmtime(time.time() + 60)),
                "query.num_traces": str(limit),
            },
        )
        traces: dict[str, list[dict[str, Any]]] = {}
        for span in spans or []:
            traces.setdefault(span["traceId"], []).append(span)
        return traces
