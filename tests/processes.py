"""Run the platform's own commands as child processes in tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

from infra.kafka_broker import LocalKafkaBroker
from infra.topics import ensure_topics
from shared_logic.settings import PROJECT_ROOT, Settings

ADCLICK = str(Path(sys.executable).parent / "adclick")


def start_adclick(settings: Settings, *args: str, log_name: str) -> subprocess.Popen:
    """Start ``adclick ARGS`` with ``settings`` in its environment, logging to the data dir."""
    log = settings.path("logs", f"{log_name}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.to_environ()}
    with open(log, "ab") as output:
        return subprocess.Popen([ADCLICK, *args], env=env, cwd=PROJECT_ROOT, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)


def run_adclick(settings: Settings, *args: str, timeout_s: float = 600.0) -> None:
    """Run ``adclick ARGS`` with ``settings`` to completion; raise if it fails."""
    env = {**os.environ, **settings.to_environ()}
    subprocess.run([ADCLICK, *args], env=env, cwd=PROJECT_ROOT, check=True, timeout=timeout_s)


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with code {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def stop(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Stop a child started by ``start_adclick``: SIGTERM, then SIGKILL after ``timeout_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def private_broker_and_collector(settings: Settings, log_name: str) -> Iterator[tuple[LocalKafkaBroker, str]]:
    """Run a broker of its own and a collector on ``settings``; yield the broker and the collector URL."""
    broker = LocalKafkaBroker(settings)
    broker.start()
    collector = None
    try:
        ensure_topics(settings)
        collector = start_adclick(settings, "collector", log_name=log_name)
        url = f"http://127.0.0.1:{settings.collector_port}"
        wait_for_http(url + "/healthz", collector)
        yield broker, url
    finally:
        if collector is not None:
            stop(collector)
        broker.stop()
