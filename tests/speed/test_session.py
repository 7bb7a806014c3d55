"""Session mode on a real standalone Flink cluster: a SIGTERM to `adclick speed` cancels the job there.

The test starts a JobManager and a TaskManager from the PyFlink package as
foreground child processes bound to 127.0.0.1, with a config.yaml of its own.
It runs `adclick speed` with ADCLICK_SPEED_DEPLOYMENT=session, waits for a
final count, sends SIGTERM, and checks through the cluster's REST API that
the job ends CANCELED with its checkpoints kept.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from shared_logic.settings import Settings
from shared_logic.timestamps import parse_timestamp_ms
from speed_layer.checkpoints import local_checkpoint_dir
from speed_layer.runner import flink_cli_path
from tests.conftest import free_port
from tests.processes import start_adclick, stop
from tests.speed.helpers import (NO_IDLENESS_S, click, latest_by_key, produce, produce_heartbeats, speed_test_settings,
                                 wait_until)

M0 = parse_timestamp_ms("2026-01-01T12:00:00Z")
# With out-of-orderness 2 s and allowed lateness 10 s, this event time makes M0 final.
HEARTBEAT_MS = parse_timestamp_ms("2026-01-01T12:01:30Z")
CANCEL_TIMEOUT_S = 60.0
# Only heartbeats move the watermark. With the 1 s idle timeout of
# speed_test_settings, a partition whose first fetch is slow could be marked
# idle, and the heartbeats on the other partitions would make M0 final
# before its clicks were counted, so the test uses NO_IDLENESS_S.


def write_cluster_config(conf_dir: Path, flink_home: Path, ports: dict[str, int], log_dir: Path) -> None:
    """Write a config.yaml for a small cluster on 127.0.0.1, keeping the package's JVM options."""
    default = yaml.safe_load((flink_home / "conf" / "config.yaml").read_text())
    config = {
        # --add-opens and --add-exports that Flink needs on Java 17.
        "env.java.opts.all": default["env"]["java"]["opts"]["all"],
        "env.log.dir": str(log_dir),
        "env.pid.dir": str(log_dir),
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": ports["jobmanager"],
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.memory.process.size": "768m",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.rpc.port": ports["taskmanager"],
        "taskmanager.memory.process.size": "1280m",
        "taskmanager.numberOfTaskSlots": 2,
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": ports["rest"],
    }
    conf_dir.mkdir(parents=True)
    (conf_dir / "config.yaml").write_text(yaml.safe_dump(config, width=1_000_000))
    # flink-console.sh passes this file to log4j.
    shutil.copy(flink_home / "conf" / "log4j-console.properties", conf_dir)


def wait_for_task_slots(rest_address: str, processes: list[subprocess.Popen], log_dir: Path,
                        timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(f"{process.args} exited with {process.returncode}; logs in {log_dir}")
        try:
            response = requests.get(f"http://{rest_address}/overview", timeout=5)
            # The REST endpoint returns an error until the dispatcher is elected leader.
            if response.ok and response.json()["slots-total"] >= 2:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise AssertionError(f"the session cluster did not offer 2 task slots within {timeout_s} s; logs in {log_dir}")


@pytest.fixture
def session_cluster(base_settings: Settings, tmp_path: Path):
    """A standalone session cluster with one TaskManager of 2 slots; yield its REST address."""
    flink_home = flink_cli_path(base_settings).parent.parent
    ports = {"rest": free_port(), "jobmanager": free_port(), "taskmanager": free_port()}
    conf_dir = tmp_path / "flink-conf"
    log_dir = tmp_path / "flink-logs"
    write_cluster_config(conf_dir, flink_home, ports, log_dir)
    env = {**os.environ, "FLINK_CONF_DIR": str(conf_dir), "JAVA_HOME": str(base_settings.java_home)}
    rest_address = f"127.0.0.1:{ports['rest']}"
    processes = []
    try:
        for script in ("jobmanager.sh", "taskmanager.sh"):
            with open(tmp_path / f"{script}.out", "ab") as output:
                # start-foreground execs the JVM, so each PID is the JVM's own.
                processes.append(subprocess.Popen([str(flink_home / "bin" / script), "start-foreground"],
                                                  env=env, stdout=output, stderr=subprocess.STDOUT))
        wait_for_task_slots(rest_address, processes, log_dir)
        yield rest_address
    finally:
        for process in processes:
            stop(process, timeout_s=30)


class SessionSpeedCommand:
    """`adclick speed` in session mode as a child process, with the is_running and log that wait_until uses."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.log_file = settings.path("logs", f"{settings.speed_job_name}.log")
        self.job_log_file = settings.path("flink", "logs", settings.speed_job_name, "job.log")
        self.process = start_adclick(settings, "speed", log_name=settings.speed_job_name)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return "".join(path.read_text(errors="replace") for path in (self.log_file, self.job_log_file)
                       if path.exists())

    def client_pid(self) -> int | None:
        """Return the PID of the `flink run` client that `adclick speed` started, if it logged one."""
        match = re.search(rf"started speed job {self.settings.speed_job_name} \(pid (\d+)", self.log())
        return int(match.group(1)) if match else None

    def stop(self) -> None:
        """Stop the command, then SIGKILL the client's process group in case the command left it behind."""
        client_pid = self.client_pid()
        stop(self.process, timeout_s=CANCEL_TIMEOUT_S)
        if client_pid is not None:
            try:
                os.killpg(client_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def jobs_named(rest_address: str, name: str) -> dict[str, str]:
    """Return the state of every job named ``name`` on the cluster, by job id."""
    overview = requests.get(f"http://{rest_address}/jobs/overview", timeout=10).json()
    return {job["jid"]: job["state"] for job in overview["jobs"] if job["name"] == name}


def wait_for_job_state(rest_address: str, job_id: str, states: tuple[str, ...], timeout_s: float) -> str:
    """Poll the job's state until it is one of ``states`` or ``timeout_s`` passed; return the last state."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = requests.get(f"http://{rest_address}/jobs/{job_id}", timeout=10).json()["state"]
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def running_job_id(command: SessionSpeedCommand, rest_address: str, timeout_s: float = 180.0) -> str:
    """Wait until the cluster runs the command's job, and return the job id."""
    name = command.settings.speed_job_name
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not command.is_running():
            raise AssertionError(f"adclick speed exited with {command.process.returncode}:\n{command.log()[-4000:]}")
        running = [job_id for job_id, state in jobs_named(rest_address, name).items() if state == "RUNNING"]
        if running:
            assert len(running) == 1, f"several jobs named {name} run: {running}"
            return running[0]
        time.sleep(1)
    raise AssertionError(f"job {name} not RUNNING on the cluster within {timeout_s} s:\n{command.log()[-4000:]}")


def test_sigterm_cancels_job_on_cluster(base_settings, kafka_broker, session_cluster):
    settings = speed_test_settings(base_settings).replace(speed_deployment="session",
                                                          flink_rest_address=session_cluster,
                                                          source_idle_timeout_s=NO_IDLENESS_S)
    command = SessionSpeedCommand(settings)
    try:
        job_id = running_job_id(command, session_cluster)
        produce(settings, [
            click("s-1", "ad-session", "2026-01-01T12:00:10.000Z"),
            click("s-2", "ad-session", "2026-01-01T12:00:20.000Z"),
            click("s-3", "ad-session", "2026-01-01T12:00:30.000Z"),
        ], partition=0)
        produce_heartbeats(settings, HEARTBEAT_MS)
        counts = settings.topic_click_counts
        wait_until(lambda: latest_by_key(settings, counts).get(("ad-session", M0), {}).get("is_final", False),
                   command, "the final count of ad-session", timeout_s=120)
        assert latest_by_key(settings, counts)[("ad-session", M0)]["clicks"] == 3

        command.process.send_signal(signal.SIGTERM)
        returncode = command.process.wait(timeout=2 * CANCEL_TIMEOUT_S)
        state = wait_for_job_state(session_cluster, job_id, ("CANCELED", "FAILED", "FINISHED"), CANCEL_TIMEOUT_S)
        log = command.log()
    finally:
        command.stop()

    assert state == "CANCELED", log[-4000:]
    assert returncode == 0, log[-4000:]
    assert f"job {settings.speed_job_name} ({job_id}) is CANCELED" in command.log_file.read_text()
    assert list((local_checkpoint_dir(settings) / job_id).glob("chk-*/_metadata")), "no retained checkpoint"
