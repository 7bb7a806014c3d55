"""Launch the speed job from the main environment, in a MiniCluster or on a session cluster.

On a session cluster, the job is cancelled through the cluster's REST API
(``cancel_session_jobs``), because stopping the `flink run` client does not
reliably cancel it.

The job needs PyFlink, which lives in its own virtual environment
(``settings.flink_python``), so it always runs in a child process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import requests

from shared_logic.settings import PROJECT_ROOT, Settings
from speed_layer.job import TERMINAL_STATES

logger = logging.getLogger(__name__)

JOB_FILE = PROJECT_ROOT / "speed_layer" / "job.py"
REST_TIMEOUT_S = 10.0


def job_environment(settings: Settings) -> dict[str, str]:
    """Return the child's environment: the settings, Java, heap and Flink log folder."""
    log_dir = settings.path("flink", "logs", settings.speed_job_name)
    log_dir.mkdir(parents=True, exist_ok=True)
    heap = f"{settings.speed_jvm_heap_mb}m"
    return {
        **os.environ,
        **settings.to_environ(),
        "JAVA_HOME": str(settings.java_home),
        "PATH": f"{settings.java_home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        # Read by PyFlink's gateway launcher for the MiniCluster JVM.
        "JVM_ARGS": f"-Xms256m -Xmx{heap}",
        "FLINK_LOG_DIR": str(log_dir),
        # `flink run -py` starts the file as a script, so the project's
        # packages (shared_logic, speed_layer) must be on the path.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }


def flink_cli_path(settings: Settings) -> Path:
    """Return the `flink` CLI that ships inside the PyFlink package of ``settings.flink_python``."""
    # pip puts no `flink` script into the environment's bin folder, so the CLI comes from pyflink/bin.
    package_dir = subprocess.run(
        [str(settings.flink_python), "-c", "import pathlib, pyflink; print(pathlib.Path(pyflink.__file__).parent)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return Path(package_dir, "bin", "flink")


def job_command(settings: Settings, restore_from: str | None = None) -> list[str]:
    """Return the command that runs the job in the configured deployment."""
    if settings.speed_deployment == "minicluster":
        command = [str(settings.flink_python), "-m", "speed_layer.job"]
    else:
        # A signal to this client does not reliably cancel the job on the
        # session cluster, so `adclick speed` cancels it with cancel_session_jobs.
        command = [str(flink_cli_path(settings)), "run", "-m", settings.flink_rest_address,
                   "-pyclientexec", str(settings.flink_python), "-pyexec", str(settings.flink_python),
                   "-py", str(JOB_FILE)]
    if restore_from:
        command += ["--restore-from", restore_from]
    return command


def start_job(settings: Settings, log_file: Path, restore_from: str | None = None) -> subprocess.Popen:
    """Start the job in its own process group, writing its output to ``log_file``."""
    if not Path(settings.flink_python).exists():
        raise FileNotFoundError(f"PyFlink interpreter not found at {settings.flink_python}; "
                                "run `make setup` or set ADCLICK_FLINK_PYTHON")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = job_command(settings, restore_from)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=job_environment(settings), cwd=PROJECT_ROOT, start_new_session=True)
    logger.info("started speed job %s (pid %d, %s), log %s", settings.speed_job_name, process.pid,
                settings.speed_deployment, log_file)
    return process


def session_job_ids(settings: Settings) -> list[str]:
    """Return the ids of the session cluster's unfinished jobs named ``settings.speed_job_name``."""
    response = requests.get(f"http://{settings.flink_rest_address}/jobs/overview", timeout=REST_TIMEOUT_S)
    response.raise_for_status()
    return [job["jid"] for job in response.json()["jobs"]
            if job["name"] == settings.speed_job_name and job["state"] not in TERMINAL_STATES]


def session_job_state(settings: Settings, job_id: str) -> str:
    """Return the state of job ``job_id`` on the session cluster, such as RUNNING or CANCELED."""
    response = requests.get(f"http://{settings.flink_rest_address}/jobs/{job_id}", timeout=REST_TIMEOUT_S)
    response.raise_for_status()
    return response.json()["state"]


def cancel_session_job(settings: Settings, job_id: str, timeout_s: float) -> str:
    """Cancel job ``job_id`` on the session cluster and wait until it ends.

    Returns the job's final state. Raises TimeoutError when the job has not
    ended within ``timeout_s``.
    """
    response = requests.patch(f"http://{settings.flink_rest_address}/jobs/{job_id}",
                              params={"mode": "cancel"}, timeout=REST_TIMEOUT_S)
    response.raise_for_status()
    deadline = time.monotonic() + timeout_s
    while (state := session_job_state(settings, job_id)) not in TERMINAL_STATES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {settings.speed_job_name} ({job_id}) is still {state} "
                               f"{timeout_s:.0f} s after the cancel request")
        time.sleep(0.5)
    return state


def cancel_session_jobs(settings: Settings, timeout_s: float = 60.0) -> list[str]:
    """Cancel every unfinished job named ``settings.speed_job_name`` on the session cluster.

    Waits until each job ends and returns their final states, which are
    CANCELED unless a job failed or finished first. The checkpoints are
    retained, because the job sets RETAIN_ON_CANCELLATION.
    """
    states = []
    for job_id in session_job_ids(settings):
        logger.info("cancelling job %s (%s) on the session cluster at %s", settings.speed_job_name,
                    job_id, settings.flink_rest_address)
        state = cancel_session_job(settings, job_id, timeout_s)
        if state == "CANCELED":
            logger.info("job %s (%s) is CANCELED; its checkpoints are retained", settings.speed_job_name, job_id)
        else:
            logger.warning("job %s (%s) ended %s instead of CANCELED", settings.speed_job_name, job_id, state)
        states.append(state)
    return states
