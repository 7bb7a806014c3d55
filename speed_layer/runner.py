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
        # NOTE: a signal to this client does not cancel the job on the session
        # cluster, because the client JVM shuts down before the Python driver
        # can cancel it. Cancel it with `flink cancel <job id>`.
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
