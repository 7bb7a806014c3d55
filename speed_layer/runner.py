"""Launch the speed job from the main environment, in a MiniCluster or on a session cluster.

The job needs PyFlink, which lives in its own virtual environment
(``settings.flink_python``), so it always runs in a child process.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from shared_logic.settings import PROJECT_ROOT, Settings

logger = logging.getLogger(__name__)

JOB_FILE = PROJECT_ROOT / "speed_layer" / "job.py"


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
    }


def job_command(settings: Settings, restore_from: str | None = None) -> list[str]:
    """Return the command that runs the job in the configured deployment."""
    if settings.speed_deployment == "minicluster":
        command = [str(settings.flink_python), "-m", "speed_layer.job"]
    else:
        # NOTE: session mode is built from Flink's `flink run` options but was
        # not run against a session cluster here.
        flink_cli = Path(settings.flink_python).parent / "flink"
        command = [str(flink_cli), "run", "-m", settings.flink_rest_address,
                   "-pyexec", str(settings.flink_python), "-py", str(JOB_FILE)]
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
