"""Real servers for integration tests: Debian's Prometheus on a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import free_port, http_get, wait_for


def require_binary(name: str) -> str:
    """The binary's path. Missing: a failure under CI=true (CI installs it), else a skip."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian package: apt-get install prometheus)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; under CI=true a real-component test must not skip")
    pytest.skip(message)


class Prometheus:
    """A Prometheus server scraping ``targets`` every second, queried over its HTTP API."""

    def __init__(self, workdir: Path, targets: Sequence[str], rule_files: Sequence[Path] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "planes", "static_configs": [{"targets": list(targets)}]}],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                require_binary("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for("Prometheus to be ready", lambda: self._alive() and http_get(f"{self.url}/-/ready")[0] == 200)

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}; see {self.log.name}")
        return True

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        status, _, body = http_get(f"{self.url}/api/v1/{path}?{query}")
        reply = json.loads(body)
        assert status == 200, reply
        assert reply["status"] == "success", reply
        return reply["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result = self.api("query", query=promql)["result"]
        assert isinstance(result, list)
        return result

    def wait_for_scrapes(self, targets: int, samples: int = 3) -> None:
        """Until every target is up and has been scraped at least ``samples`` times."""

        def scraped() -> bool:
            counts = self.query("count_over_time(up[5m])")
            ups = self.query("up == 1")
            return (
                len(ups) == targets and len(counts) == targets and all(float(c["value"][1]) >= samples for c in counts)
            )

        wait_for(f"{targets} targets scraped {samples} times", scraped, timeout=60)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
