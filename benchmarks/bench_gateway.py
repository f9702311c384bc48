"""One gateway Collector forwarding many planes into Thanos Receive: throughput, loss, memory.

    .venv/bin/python benchmarks/bench_gateway.py [--planes 20] [--seconds 300] [--quick]

Starts Thanos Receive and Thanos Query (thanos/build.sh, with the flags docker-compose.yml
gives them) and our Collector in the gateway role (otel_collector/gateway.yaml) on
loopback, then ``--planes`` processes, each a Data plane pushing OTLP every 5 s with a
fixed set of series (counters, gauges, a histogram) that it updates continuously. After
``--seconds`` the planes stop (their last export included) and the script compares every
counter total in Thanos (through Query) with what the planes recorded, and prints the
series and samples per second that reached Receive and the peak memory (RSS) of the
Collector, of Receive and of Query while they did.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS, SOURCES = 100, 5  # per plane: 500 counters, 100 gauges, a 100-series histogram

PLANE = r"""
import os, random, signal, sys, time
from trading_telemetry import init_metrics_exporter, reset
stop = False
def _stop(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, _stop)
m = init_metrics_exporter("data_plane")
symbols = [f"S{i:03d}" for i in range({symbols})]
sources = [f"feed{j}" for j in range({sources})]
ticks = [m.bind("ticks_received", source=s, symbol=y) for s in sources for y in symbols]
fresh = [m.bind("data_freshness", source=sources[0], symbol=y) for y in symbols]
rng = random.Random(int(sys.argv[1]))
count = 0
while not stop:
    for t in ticks:
        t.inc()
    count += 1
    for f in fresh:
        f.observe(rng.random() * 0.05)
    for y in symbols:
        m.set("completeness_score", rng.random(), symbol=y)
    time.sleep(0.05)
reset(timeout=30)  # the last export, then exit
print(count, flush=True)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(script: str) -> str:
    done = subprocess.run(["bash", str(ROOT / script)], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def compose_flags(service: str) -> list[str]:
    """The flags docker-compose.yml gives a Thanos service, less its addresses and paths."""
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]["command"]
    own = (
        "--http-address=",
        "--grpc-address=",
        "--remote-write.address=",
        "--tsdb.path=",
        "--endpoint.sd-config-file=",
    )
    return [flag for flag in command[1:] if not flag.startswith(own)]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def promql(base: str, query: str) -> list[dict[str, object]]:
    body = json.loads(get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"))
    return list(body["data"]["result"])


def received_samples(base: str) -> float:
    """Samples Receive has accepted so far (its own /metrics: write requests answered 200)."""
    total = 0.0
    for line in get(f"{base}/metrics").decode().splitlines():
        if line.startswith("thanos_receive_write_samples_sum{") and 'code="200"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def running(proc: subprocess.Popen[bytes], name: str) -> bool:
    """True while ``proc`` runs; its exit stops the benchmark (SystemExit is not retried by wait)."""
    if proc.poll() is not None:
        raise SystemExit(f"Thanos {name} exited with {proc.returncode}")
    return True


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait(what: str, probe, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except Exception:  # noqa: BLE001 - polled until the deadline
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--quick", action="store_true", help="3 planes for 20 s (a smoke run)")
    args = parser.parse_args()
    planes, seconds = (3, 20.0) if args.quick else (args.planes, args.seconds)
    thanos_bin, collector_bin = build("thanos/build.sh"), build("otel_collector/build.sh")
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    receive_http, receive_grpc, remote_write, query_http = free_port(), free_port(), free_port(), free_port()
    receive_base, base = f"http://127.0.0.1:{receive_http}", f"http://127.0.0.1:{query_http}"
    started: list[subprocess.Popen[bytes]] = []
    try:
        argv = [thanos_bin, "receive", *compose_flags("thanos-receive"), f"--tsdb.path={work / 'receive'}",
                f"--http-address=127.0.0.1:{receive_http}", f"--grpc-address=127.0.0.1:{receive_grpc}",
                f"--remote-write.address=127.0.0.1:{remote_write}",
                f"--receive.capnproto-address=127.0.0.1:{free_port()}", "--log.level=warn"]  # fmt: skip
        receive = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(receive)
        endpoints = work / "endpoints.yml"  # Receive alone (compose's thanos/endpoints.yml adds the Ruler)
        endpoints.write_text(yaml.safe_dump({"endpoints": [{"address": f"127.0.0.1:{receive_grpc}"}]}))
        argv = [thanos_bin, "query", *compose_flags("thanos-query"), f"--endpoint.sd-config-file={endpoints}",
                f"--http-address=127.0.0.1:{query_http}", f"--grpc-address=127.0.0.1:{free_port()}",
                "--log.level=warn"]  # fmt: skip
        query = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(query)
        wait("Thanos Receive", lambda: running(receive, "Receive") and get(f"{receive_base}/-/ready") is not None, 120)
        stores = f"{base}/api/v1/stores"
        wait(
            "Query to reach Receive",
            lambda: running(query, "Query") and json.loads(get(stores))["data"].get("receive"),
            60,
        )
        otlp, health = free_port(), free_port()
        token = secrets.token_hex(32)  # the gateway's OTLP receivers ask for it, as in compose
        gateway_env = {**os.environ, "OTEL_COLLECTOR_TOKEN": token, "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{otlp}",
                       "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
                       "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
                       "OTELCOL_REMOTE_WRITE_URL": f"http://127.0.0.1:{remote_write}/api/v1/receive",
                       "OTELCOL_LOG_LEVEL": "warn"}  # fmt: skip
        gateway = subprocess.Popen([collector_bin, f"--config={ROOT / 'otel_collector' / 'gateway.yaml'}"],
                                   env=gateway_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        started.append(gateway)
        wait("the gateway", lambda: get(f"http://127.0.0.1:{health}/") is not None, 60)
        code = PLANE.replace("{symbols}", str(SYMBOLS)).replace("{sources}", str(SOURCES))
        procs = []
        for k in range(planes):
            env = {**os.environ, "OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp}",
                   "OTEL_METRIC_EXPORT_INTERVAL": "5000",
                   "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{token}",
                   "OTEL_RESOURCE_ATTRIBUTES": f"service.namespace=scale,service.instance.id=sim-{k:02d}"}  # fmt: skip
            procs.append(subprocess.Popen([sys.executable, "-c", code, str(k)], env=env, stdout=subprocess.PIPE))
        started.extend(procs)
        peak = {"collector": 0.0, "receive": 0.0, "query": 0.0}
        begin = time.monotonic()
        first: tuple[float, float] | None = None
        while time.monotonic() - begin < seconds:
            peak["collector"] = max(peak["collector"], rss_mib(gateway.pid))
            peak["receive"] = max(peak["receive"], rss_mib(receive.pid))
            peak["query"] = max(peak["query"], rss_mib(query.pid))
            if first is None and time.monotonic() - begin > min(30, seconds / 3):  # after start-up
                first = (time.monotonic(), received_samples(receive_base))
            time.sleep(1)
        assert first is not None
        rate = (received_samples(receive_base) - first[1]) / (time.monotonic() - first[0])
        counts = []
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            counts.append(int(out.decode().split()[-1]))
        expected = sum(counts) * SYMBOLS * SOURCES
        series = '{job="scale/data_plane"}'

        def complete() -> bool:
            got = promql(base, f"sum(data_ticks_received_total{series})")
            return bool(got) and float(got[0]["value"][1]) == expected  # type: ignore[index]

        try:
            wait("every increment in Thanos", complete, 120)
            loss = "none"
        except SystemExit:
            got = promql(base, f"sum(data_ticks_received_total{series})")
            loss = f"{expected - float(got[0]['value'][1]) if got else expected:.0f} increments missing"  # type: ignore[index]
        total_series = promql(base, f"count({series})")
        n_series = int(float(total_series[0]["value"][1])) if total_series else 0  # type: ignore[index]
        print(f"{planes} planes pushing OTLP every 5 s for {seconds:.0f} s through one gateway Collector into Thanos")
        print(f"  series in Thanos           {n_series:,}")
        print(f"  samples per second         {rate:,.0f} accepted by Thanos Receive (its own count)")
        print(f"  counter increments         {expected:,} recorded; loss: {loss}")
        print(f"  peak RSS, gateway Collector {peak['collector']:,.0f} MiB")
        print(f"  peak RSS, Thanos Receive   {peak['receive']:,.0f} MiB")
        print(f"  peak RSS, Thanos Query     {peak['query']:,.0f} MiB")
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
