"""The stack's configuration files, checked with the tools that run them: the servers the tests
build (Prometheus and promtool, Alertmanager and amtool, our Collector) are the versions
compose deploys, accept every configuration file and every flag compose gives them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import free_port, http_get, wait_for
from servers import (
    ALERTMANAGER_AUTH,
    ALERTMANAGER_PASSWORD_HASH,
    ALERTMANAGER_TEMPLATE,
    ALERTMANAGER_WEB_TEMPLATE,
    COLLECTOR_DIR,
    COLLECTOR_TOKEN,
    PROMETHEUS_DIR,
    ROOT,
    RULE_FILES,
    collector_binary,
    jaeger_binary,
    render_env,
    require_binary,
    thanos_binary,
)
from trading_telemetry.catalog import CATALOG, Kind

COMPOSE = ROOT / "docker-compose.yml"
SCALE_THANOS = ("thanos-receive", "thanos-query", "thanos-rule")  # the `scale` profile's store
# What compose refuses to start without (docs/operations.md: "Who can do what"), with a value of each.
REQUIRED = {
    "GRAFANA_ADMIN_PASSWORD": "s3cret",
    "OTEL_COLLECTOR_TOKEN": "0123abcd" * 8,
    "ALERTMANAGER_PASSWORD": "4567cdef" * 8,
    "ALERTMANAGER_PASSWORD_HASH": "$2y$10$ezyvd18UeKz4WUKehWHeduUcndTTh0NBM7JWbTCMCQNnbEtksuoh2",
}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env, cwd=ROOT)


def _without_credentials() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in REQUIRED and not k.startswith(("GRAFANA_", "COMPOSE_"))}


def test_compose_file_validates_offline() -> None:
    """`docker-compose config -q` accepts the file when every credential is set, and refuses it, naming
    the variable, when any one is missing."""
    tool = require_binary("docker-compose", "docker-compose")
    base = _without_credentials()
    ok = run([tool, "-f", str(COMPOSE), "config", "-q"], {**base, **REQUIRED})
    assert ok.returncode == 0, ok.stderr
    for name in REQUIRED:
        refused = run([tool, "-f", str(COMPOSE), "config", "-q"], {**base, **REQUIRED, name: ""})
        assert refused.returncode != 0, name
        assert f"set {name} in .env (see .env.example)" in refused.stderr


def test_the_readme_start_copies_env_example_and_asks_for_each_credential(tmp_path: Path) -> None:
    """`cp .env.example .env` then `docker-compose config -q`: refused with one message at a time, naming
    a credential to set, until all are set; then accepted (with the demo profile uncommented too), the
    Alertmanager hash passing through .env with its $ signs intact."""
    tool = require_binary("docker-compose", "docker-compose")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    env = _without_credentials()

    def config(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([tool, "config", *args], capture_output=True, text=True, timeout=60, check=False,
                              env=env, cwd=tmp_path)  # fmt: skip

    asked: list[str] = []
    text = (tmp_path / ".env").read_text()
    while (refused := config("-q")).returncode != 0:
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, refused.stderr
        match = re.search(r"set (\w+) in \.env \(see \.env\.example\)$", lines[0])
        assert match, lines[0]
        name = match.group(1)
        assert name in REQUIRED, lines[0]
        assert name not in asked, lines[0]
        asked.append(name)
        value = f"'{REQUIRED[name]}'" if "$" in REQUIRED[name] else REQUIRED[name]
        text, count = re.subn(rf"(?m)^{name}=(?:''|)$", f"{name}={value}", text)
        assert count == 1, f"{name} is not in .env.example, empty"
        (tmp_path / ".env").write_text(text)
    assert sorted(asked) == sorted(REQUIRED)
    text = text.replace("# COMPOSE_PROFILES=demo", "COMPOSE_PROFILES=demo")
    (tmp_path / ".env").write_text(text)
    accepted = config("-q")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stderr.strip() == ""
    services = yaml.safe_load(config().stdout)["services"]
    # `config` prints $ as $$, as the compose file would write it.
    hash_seen = services["alertmanager"]["environment"]["ALERTMANAGER_PASSWORD_HASH"].replace("$$", "$")
    assert hash_seen == REQUIRED["ALERTMANAGER_PASSWORD_HASH"]
    assert services["demo"]["environment"]["OTEL_EXPORTER_OTLP_HEADERS"] == (
        "authorization=Bearer%20" + REQUIRED["OTEL_COLLECTOR_TOKEN"]
    )
    for line in ("COMPOSE_PROFILES=demo,scale", "DEMO_OTLP_ENDPOINT=", "GRAFANA_PROMETHEUS_URL="):
        text = text.replace("# " + line, line)
    (tmp_path / ".env").write_text(text)
    scaled = config()
    assert scaled.returncode == 0, scaled.stderr
    config = yaml.safe_load(scaled.stdout)
    assert config["services"]["grafana"]["environment"]["GRAFANA_PROMETHEUS_URL"] == "http://thanos-query:10902"
    assert config["services"]["demo"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-gateway:4318"


def test_every_service_is_pinned_healthchecked_and_on_loopback() -> None:
    """Images carry an explicit version, every service has a healthcheck, host ports bind 127.0.0.1."""
    services = compose()["services"]
    expected = {"config", "otel-collector", "prometheus", "alertmanager", "grafana", "jaeger", "demo", "otel-gateway",
                *SCALE_THANOS}  # fmt: skip
    assert set(services) == expected
    for name, service in services.items():
        if service.get("restart") == "no":  # a one-shot job (config): nothing to check the health of
            continue
        assert "healthcheck" in service, name
        if "image" in service:
            image = service["image"]
            assert re.search(r":[vV]?\d+\.\d+(\.\d+)?$", image), f"{name}: {image} is not pinned to a version"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is not on loopback"
    assert "demo" in services["demo"]["profiles"]
    for name in ("otel-gateway", *SCALE_THANOS):
        assert services[name]["profiles"] == ["scale"], name


def released(script: Path, name: str | None = None) -> str:
    """The release a build script builds (for ``name``, where it builds several): the `release=`
    on the line naming it."""
    named = rf"\bname={re.escape(name)}\b.*" if name else ""
    (release,) = re.findall(rf"{named}\brelease=v?([0-9][0-9.]*)", script.read_text())
    return str(release)


MANIFEST = yaml.safe_load((COLLECTOR_DIR / "builder-config.yaml").read_text())
SERVERS: dict[str, tuple[str, str, Callable[[], str]]] = {
    # compose service: (its image, the version the tests build, the binary they run)
    "prometheus": (
        "prom/prometheus:v{}", released(PROMETHEUS_DIR / "build.sh", "prometheus"), lambda: require_binary("prometheus")
    ),
    "alertmanager": (
        "prom/alertmanager:v{}", released(PROMETHEUS_DIR / "build.sh", "alertmanager"),
        lambda: require_binary("alertmanager"),
    ),
    "otel-collector": ("otel/opentelemetry-collector-contrib:{}", MANIFEST["dist"]["version"], collector_binary),
    **{
        name: ("quay.io/thanos/thanos:v{}", released(ROOT / "thanos" / "build.sh"), thanos_binary)
        for name in SCALE_THANOS
    },
    "jaeger": ("jaegertracing/jaeger:{}", released(ROOT / "jaeger" / "build.sh"), jaeger_binary),
}  # fmt: skip
"""The servers compose deploys that the tests build from source, one row each."""


@pytest.mark.parametrize("service", sorted(SERVERS))
def test_compose_deploys_the_version_the_tests_build(service: str) -> None:
    """Each server's image tag is the release its build script or manifest builds, and the built binary
    says it is that release."""
    image, version, binary = SERVERS[service]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert compose()["services"][service]["image"] == image.format(version)
    done = run([binary(), "--version"])
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr  # "prometheus, version 3.16.0 (...)"; Jaeger: {"gitVersion":"v2.12.0",...}
    assert re.search(rf"[vV]ersion\W+v?{re.escape(version)}\b", said), said


def test_collector_manifest_versions_agree() -> None:
    """The Collector's core, stable and contrib modules in the manifest are of one release."""
    version = MANIFEST["dist"]["version"]
    minor = int(version.split(".")[1])
    for section in ("receivers", "processors", "exporters", "extensions", "providers"):
        for entry in MANIFEST[section]:
            module, module_version = entry["gomod"].split()
            expected = f"v1.{minor - 94}.0" if "/confmap/provider/" in module else f"v{version}"
            assert module_version == expected, module


def _rendered(tmp_path: Path) -> dict[str, Path]:
    """alertmanager.yml and alertmanager-web.yml as compose's entrypoint renders them."""
    web_env = {"ALERTMANAGER_PASSWORD_HASH": ALERTMANAGER_PASSWORD_HASH}
    files = {"alertmanager.yml": (ALERTMANAGER_TEMPLATE, {}), "web.yml": (ALERTMANAGER_WEB_TEMPLATE, web_env)}
    for name, (template, env) in files.items():
        (tmp_path / name).write_text(render_env(template.read_text(), env))
    return {name: tmp_path / name for name in files}


def _collector_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OTEL_COLLECTOR_TOKEN": COLLECTOR_TOKEN, **extra}


CHECKS: dict[str, Callable[[Path], tuple[list[str], dict[str, str] | None, str]]] = {
    # name: (argv, environment, what a pass prints) for a temporary directory
    "promtool check config": lambda _: (
        [require_binary("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")], None,
        f"SUCCESS: {len(RULE_FILES)} rule files found",
    ),
    "promtool check rules": lambda _: (
        [require_binary("promtool"), "check", "rules", *map(str, RULE_FILES)], None, "SUCCESS",
    ),
    "promtool test rules": lambda _: (
        [require_binary("promtool"), "test", "rules", *map(str, sorted((PROMETHEUS_DIR / "tests").glob("*.yml")))],
        None, "SUCCESS",
    ),
    "amtool check-config": lambda tmp: (
        [require_binary("amtool"), "check-config", str(_rendered(tmp)["alertmanager.yml"])], None, "SUCCESS",
    ),
    "promtool check web-config (Alertmanager's)": lambda tmp: (
        [require_binary("promtool"), "check", "web-config", str(_rendered(tmp)["web.yml"])], None, "SUCCESS",
    ),
    "otelcol validate config.yaml": lambda _: (
        [collector_binary(), "validate", f"--config={COLLECTOR_DIR / 'config.yaml'}"], _collector_env(), "",
    ),
    "otelcol validate gateway.yaml": lambda _: (
        [collector_binary(), "validate", f"--config={COLLECTOR_DIR / 'gateway.yaml'}"],
        _collector_env(OTELCOL_REMOTE_WRITE_URL="http://127.0.0.1:9/api/v1/push"), "",
    ),
}  # fmt: skip


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_every_config_file_passes_its_servers_own_check(check: str, tmp_path: Path) -> None:
    """promtool (config, rules, rule unit tests, Alertmanager's web config), amtool (the rendered
    alertmanager.yml) and `otelcol validate` (config.yaml, gateway.yaml) of the built servers accept
    the repository's files."""
    argv, env, says = CHECKS[check](tmp_path)
    done = run(argv, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert says in done.stdout + done.stderr, done.stdout + done.stderr


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, headers: dict[str, str] | None = None) -> None:
    """Until ``url`` answers 200; failing at once, with the log, if the server exits."""

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{log.stem} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        return http_get(url, headers)[0] == 200

    wait_for(f"{url} to answer", ready)


def _complaints(log: Path) -> list[str]:
    """A server's warnings and errors (slog's level=WARN and level=ERROR lines)."""
    return [line for line in log.read_text().splitlines() if re.search(r"\blevel=(WARN|ERROR)\b", line)]


@pytest.mark.integration
def test_compose_prometheus_flags_are_accepted_and_in_force(tmp_path: Path) -> None:
    """The built Prometheus, started with every flag of compose's command (its paths moved into a
    temporary directory), becomes ready without a warning, and its flags API shows each flag's value:
    every feature named in --enable-feature is known to it."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["rule_files"] = [str(p) for p in RULE_FILES]
    (tmp_path / "alertmanager.password").write_text("x")
    for alertmanager in config["alerting"]["alertmanagers"]:
        alertmanager["basic_auth"]["password_file"] = str(tmp_path / "alertmanager.password")
    for job in [*config["scrape_configs"], *config["alerting"]["alertmanagers"]]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(PROMETHEUS_DIR / f) for f in sd["files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    moved = {"--config.file": str(tmp_path / "prometheus.yml"), "--storage.tsdb.path": str(tmp_path / "data")}
    flags = {}
    for flag in compose()["services"]["prometheus"]["command"]:
        name, _, value = flag.partition("=")
        flags[name] = moved.get(name, value)
    assert set(moved) <= set(flags)
    port = free_port()
    argv = [require_binary("prometheus"), *(f"{n}={v}" for n, v in flags.items()),
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"]  # fmt: skip
    proc = _start(argv, tmp_path / "prometheus.log")
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}/-/ready", tmp_path / "prometheus.log")
        _, _, body = http_get(f"http://127.0.0.1:{port}/api/v1/status/flags")
        in_force = json.loads(body)["data"]
        for name, value in flags.items():
            assert in_force[name.removeprefix("--")] == value, name
        assert _complaints(tmp_path / "prometheus.log") == []
    finally:
        _stop(proc)


@pytest.mark.integration
def test_compose_alertmanager_flags_are_accepted(tmp_path: Path) -> None:
    """The built Alertmanager, started with every flag of compose's command (its files rendered into a
    temporary directory), becomes ready without a warning and runs no cluster."""
    (script,) = compose()["services"]["alertmanager"]["command"]
    command = shlex.split(script.split("exec /bin/alertmanager", 1)[1])
    rendered = _rendered(tmp_path)
    moved = {"--config.file": str(rendered["alertmanager.yml"]), "--web.config.file": str(rendered["web.yml"]),
             "--storage.path": str(tmp_path / "data")}  # fmt: skip
    flags = {}
    for flag in command:
        name, _, value = flag.partition("=")
        flags[name] = moved.get(name, value)
    assert set(moved) <= set(flags)
    port = free_port()
    argv = [require_binary("alertmanager"), *(f"{n}={v}" for n, v in flags.items()),
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"]  # fmt: skip
    proc = _start(argv, tmp_path / "alertmanager.log")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, f"{url}/-/ready", tmp_path / "alertmanager.log", ALERTMANAGER_AUTH)
        status = json.loads(http_get(f"{url}/api/v2/status", ALERTMANAGER_AUTH)[2])
        assert status["cluster"]["status"] == "disabled"
        assert _complaints(tmp_path / "alertmanager.log") == []
    finally:
        _stop(proc)


@pytest.mark.parametrize("service", ["otel-collector", "otel-gateway"])
def test_compose_collector_flags_are_accepted(service: str) -> None:
    """`otelcol validate` of our build, given compose's command for the service (its config path moved
    to the repository's file), accepts it."""
    flags = [f.replace("/etc/otelcol/", f"{COLLECTOR_DIR}/") for f in compose()["services"][service]["command"]]
    env = _collector_env(OTELCOL_REMOTE_WRITE_URL="http://127.0.0.1:9/api/v1/push")
    done = run([collector_binary(), "validate", *flags], env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_the_repository_configs() -> None:
    """The Collector runs otel_collector/config.yaml; Prometheus keeps 30 days and stores exemplars."""
    services = compose()["services"]
    assert "collector_config:/etc/otelcol:ro" in services["otel-collector"]["volumes"]
    assert services["otel-collector"]["command"] == ["--config=/etc/otelcol/config.yaml"]
    flags = services["prometheus"]["command"]
    assert "--storage.tsdb.retention.time=30d" in flags
    assert "--enable-feature=exemplar-storage" in flags
    assert "prometheus_data:/prometheus" in services["prometheus"]["volumes"]
    password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), "the Grafana password must come from the environment"


def test_compose_gives_every_write_and_control_path_its_credential() -> None:
    """The Collectors and the demo get the token from .env; Prometheus has no lifecycle, admin or write API and
    sends Alertmanager's password, as Thanos Ruler does; Alertmanager runs its web config and no cluster port;
    Jaeger and Thanos are only on the backend network."""
    services = compose()["services"]
    token = "${OTEL_COLLECTOR_TOKEN:?set OTEL_COLLECTOR_TOKEN in .env (see .env.example)}"
    for name in ("otel-collector", "otel-gateway"):
        assert services[name]["environment"]["OTEL_COLLECTOR_TOKEN"] == token, name
    assert services["demo"]["environment"]["OTEL_EXPORTER_OTLP_HEADERS"] == f"authorization=Bearer%20{token}"
    prometheus = services["prometheus"]
    enabled = [f for f in prometheus["command"] if f.startswith("--web.enable-") or "receiver" in f]
    assert not enabled, "no lifecycle, admin, remote-write or OTLP API"
    assert prometheus["environment"]["ALERTMANAGER_PASSWORD"].startswith("${ALERTMANAGER_PASSWORD:?")
    (script,) = services["alertmanager"]["command"]
    assert "--web.config.file=/tmp/web.yml" in script
    assert "/etc/alertmanager/alertmanager-web.yml" in script
    assert script.endswith("--cluster.listen-address=")
    assert services["alertmanager"]["environment"]["ALERTMANAGER_PASSWORD_HASH"].startswith(
        "${ALERTMANAGER_PASSWORD_HASH:?"
    )
    rule = services["thanos-rule"]
    assert rule["environment"]["ALERTMANAGER_PASSWORD"].startswith("${ALERTMANAGER_PASSWORD:?")
    assert "> /tmp/alertmanager.password" in rule["entrypoint"][2]
    alertmanagers = yaml.safe_load((ROOT / "thanos" / "alertmanagers.yml").read_text())["alertmanagers"]
    assert [a["http_config"]["basic_auth"] for a in alertmanagers] == [
        {"username": "alertmanager", "password_file": "/tmp/alertmanager.password"}
    ]
    for name in ("jaeger", *SCALE_THANOS):
        assert services[name]["networks"] == ["backend"], name
    for name, service in services.items():
        if name not in ("jaeger", *SCALE_THANOS) and "backend" in service.get("networks", []):
            assert name in ("otel-collector", "otel-gateway", "grafana", "alertmanager"), name


def test_scrape_jobs_have_sample_and_label_limits() -> None:
    """Every job limits samples and labels per scrape; the planes' limit holds one plane at the default
    cardinality limit, the Collector's the three planes."""
    from trading_telemetry.config import TelemetryConfig

    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, job in jobs.items():
        for key in ("sample_limit", "label_limit", "label_name_length_limit", "label_value_length_limit"):
            assert job.get(key, 0) > 0, (name, key)
    per_plane: dict[str, int] = {}
    for spec in CATALOG:
        samples = len(spec.buckets or ()) + 1 + 2 * spec.has_sum_and_count if spec.kind is Kind.HISTOGRAM else 1
        per_plane[spec.plane] = per_plane.get(spec.plane, 0) + samples * TelemetryConfig().cardinality_limit
    assert jobs["trading-planes"]["sample_limit"] >= max(per_plane.values())
    assert jobs["otel-collector"]["sample_limit"] >= sum(per_plane.values())


def test_collector_job_drops_exactly_the_series_the_direct_path_lacks() -> None:
    """The otel-collector job drops _sum/_count of exactly the histograms that have none on the planes' endpoints."""
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "otel-collector"]
    assert job["honor_labels"] is True  # job and instance from the Resource; only token holders push
    (drop,) = job["metric_relabel_configs"]
    pattern = re.compile(f"^(?:{drop['regex']})$")
    for spec in CATALOG:
        for suffix in ("_sum", "_count"):
            name = spec.prometheus_name + suffix
            dropped = bool(pattern.match(name))
            assert dropped == (spec.kind is Kind.HISTOGRAM and not spec.has_sum_and_count), name


def test_target_files_are_valid_json_lists() -> None:
    """Every file_sd target file the config names exists and is a JSON list."""
    import json

    for path in (ROOT / "prometheus" / "targets").glob("*.json"):
        assert isinstance(json.loads(path.read_text()), list), path
    assert {p.name for p in Path(ROOT / "prometheus" / "targets").glob("*.json")} == {
        "collector.json", "planes.json", "alertmanager.json",
    }  # fmt: skip


def test_config_copies_are_readable_by_the_containers_whatever_the_umask(tmp_path: Path) -> None:
    """The config service's command, run by busybox (the image's shell) on a checkout made under
    umask 077, leaves every file world-readable and every directory world-searchable and Thanos'
    data volumes its user's, and each service mounts the copy it reads."""
    tool = require_binary("docker-compose", "docker-compose")
    busybox = require_binary("busybox", "busybox")
    done = run([tool, "-f", str(COMPOSE), "config"], {**os.environ, **REQUIRED})
    assert done.returncode == 0, done.stderr
    service = yaml.safe_load(done.stdout)["services"]["config"]
    (script,) = service["command"]
    src, dst = tmp_path / "src", tmp_path / "config"
    old = os.umask(0o077)
    try:
        # As git checks out: modes from the umask.
        for name in ("otel_collector", "prometheus", "grafana", "thanos", "jaeger"):
            for file in (ROOT / name).rglob("*"):
                if file.is_file() and not any(part.startswith(".") for part in file.parts[len(ROOT.parts) :]):
                    (src / file.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, src / file.relative_to(ROOT))
            (dst / name).mkdir(parents=True)
    finally:
        os.umask(old)
    assert (src / "prometheus" / "prometheus.yml").stat().st_mode & 0o077 == 0  # as a umask 077 checkout is
    script = script.replace("$$", "$")  # compose unescapes $$ when it runs the command
    data = tmp_path / "data"  # Thanos' data volumes, new hence root's
    for volume in ("thanos-receive", "thanos-rule"):
        (data / volume).mkdir(parents=True)
    owner = 1001  # the Thanos image's user
    if os.geteuid() != 0:  # only root gives files away: the test's own user stands in for Thanos'
        owner = os.geteuid()
        script = script.replace("chown 1001:1001", f"chown {owner}:{os.getegid()}")
    script = re.sub(r"/data\b", str(data), re.sub(r"/config\b", str(dst), re.sub(r"/src\b", str(src), script)))
    ran = subprocess.run([busybox, "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    for path in dst.rglob("*"):
        assert path.stat().st_mode & (0o005 if path.is_dir() else 0o004), f"{path} is not readable by others"
    for volume in ("thanos-receive", "thanos-rule"):
        assert (data / volume).stat().st_uid == owner, volume
    mounts = {
        "otel-collector": "collector_config:/etc/otelcol:ro", "otel-gateway": "collector_config:/etc/otelcol:ro",
        "prometheus": "prometheus_config:/etc/prometheus:ro", "alertmanager": "prometheus_config:/etc/alertmanager:ro",
        "grafana": "grafana_config:/etc/grafana/trading:ro", "thanos-query": "thanos_config:/etc/thanos:ro",
        "thanos-rule": "thanos_config:/etc/thanos:ro", "thanos-receive": "thanos_receive_data:/data",
        "jaeger": "jaeger_config:/etc/jaeger:ro",
    }  # fmt: skip
    services = compose()["services"]
    for name, mount in mounts.items():
        assert any(str(v).split("  ")[0].startswith(mount) for v in services[name]["volumes"]), name
        assert services[name]["depends_on"]["config"] == {"condition": "service_completed_successfully"}, name
    # Thanos Ruler reads the rule files Prometheus loads, from Prometheus' copy; the config service owns
    # Thanos' data volumes to the image's user.
    assert "prometheus_config:/etc/prometheus:ro" in services["thanos-rule"]["volumes"]
    assert "--rule-file=/etc/prometheus/rules/*.yml" in services["thanos-rule"]["command"]
    assert (dst / "prometheus" / "rules" / "alerts.yml").read_text() == (
        ROOT / "prometheus" / "rules" / "alerts.yml"
    ).read_text()
    assert {"thanos_receive_data:/data/thanos-receive", "thanos_rule_data:/data/thanos-rule"} <= set(
        services["config"]["volumes"]
    )
