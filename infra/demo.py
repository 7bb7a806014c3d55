"""``adclick demo`` and ``adclick down``: the whole pipeline on a real click log.

The demo starts Kafka, the collector, the speed layer, the serving API and the
dashboard as background processes, with PID files in ``var/run``. It then
replays a click log through the collector, lands the raw clicks, runs the
nightly billing DAG through Airflow for every closed day and prints a summary. The services keep
running so the dashboard can be explored; ``adclick down`` stops them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from infra.kafka_broker import LocalKafkaBroker
from infra.processes import read_pid, spawn, stop_pid
from infra.topics import ensure_topics
from shared_logic.settings import PROJECT_ROOT, Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    name: str
    args: tuple[str, ...]
    health_path: str | None

    def health_url(self, settings: Settings) -> str | None:
        ports = {"collector": settings.collector_port, "serving": settings.serving_port,
                 "dashboard": settings.dashboard_port}
        if self.health_path is None:
            return None
        return f"http://127.0.0.1:{ports[self.name]}{self.health_path}"


SERVICES = (
    Service("collector", ("collector",), "/healthz"),
    Service("speed", ("speed",), None),
    Service("serving", ("serve",), "/healthz"),
    Service("dashboard", ("dashboard",), "/_stcore/health"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the whole pipeline on a real click log and print a summary",
        description="Start Kafka, the collector, the speed layer, the serving API and the dashboard, "
                    "replay a click log, run the nightly billing DAG for the closed days and print a "
                    "summary. Services keep running until `adclick down`.")
    demo.add_argument("--data", type=Path, help="TalkingData CSV or JSON-lines click log (default: the "
                                                "TalkingData sample in ../shared/data, else synthetic traffic)")
    demo.add_argument("--speedup", type=float, default=3000.0,
                      help="replay speed relative to the log's own pace (default: 3000)")
    demo.set_defaults(handler=_demo)
    down = subparsers.add_parser("down", help="stop every process the demo started",
                                 description="Stop the demo's services and the local Kafka broker.")
    down.set_defaults(handler=_down)


def run_dir(settings: Settings) -> Path:
    path = settings.path("run")
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_service(service: Service, settings: Settings) -> int:
    """Start ``adclick <args>`` in the background unless it already runs; return its PID."""
    pid_file = run_dir(settings) / f"{service.name}.pid"
    existing = read_pid(pid_file)
    if existing is not None:
        logger.info("%s already running (pid %d)", service.name, existing)
        return existing
    adclick = str(Path(sys.executable).parent / "adclick")
    process = spawn([adclick, *service.args], settings.path("logs", f"{service.name}.log"), pid_file,
                    cwd=PROJECT_ROOT)
    return process.pid


def wait_healthy(service: Service, settings: Settings, timeout_s: float = 120.0) -> None:
    url = service.health_url(settings)
    if url is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if read_pid(run_dir(settings) / f"{service.name}.pid") is None:
            raise RuntimeError(f"{service.name} exited; see {settings.path('logs', service.name + '.log')}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                logger.info("%s is healthy at %s", service.name, url)
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(f"{service.name} did not become healthy at {url} within {timeout_s:.0f} s")


def _down(_args: argparse.Namespace, settings: Settings) -> int:
    for service in reversed(SERVICES):
        pid_file = run_dir(settings) / f"{service.name}.pid"
        pid = read_pid(pid_file)
        if pid is not None:
            stop_pid(pid, service.name, timeout_s=60)
        pid_file.unlink(missing_ok=True)
    LocalKafkaBroker(settings).stop()
    print("stopped the demo's services and the Kafka broker")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from infra.demo_steps import run_demo

    from traffic.sources import default_sample_path

    data = args.data or default_sample_path()
    if args.data is not None and not args.data.exists():
        print(f"adclick demo: {args.data} not found; pass a TalkingData CSV or JSON-lines file", file=sys.stderr)
        return 2
    LocalKafkaBroker(settings).start()
    ensure_topics(settings)
    for service in SERVICES:
        start_service(service, settings)
    for service in SERVICES:
        wait_healthy(service, settings)
    summary = run_demo(settings, data, args.speedup)
    print(summary)
    return 0
