"""Start, find and stop the platform's background processes by PID file."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def read_pid(pid_file: Path) -> int | None:
    """Return the PID in ``pid_file`` if that process is still running."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if not is_running(pid):
        return None
    return pid


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    # A zombie has exited and only waits for its parent to reap it.
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def spawn(command: list[str], log_file: Path, pid_file: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start ``command`` in its own session, logging to ``log_file``, and record its PID."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
        )
    pid_file.write_text(str(process.pid))
    logger.info("started %s (pid %d), log %s", Path(command[0]).name, process.pid, log_file)
    return process


def stop_pid(pid: int, name: str, timeout_s: float = 60.0) -> None:
    """Send SIGTERM to ``pid``, wait for it to exit, and SIGKILL it after ``timeout_s``."""
    logger.info("stopping %s (pid %d)", name, pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(pid):
            logger.info("stopped %s (pid %d)", name, pid)
            return
        time.sleep(0.2)
    logger.warning("%s (pid %d) did not exit within %.0f s; sending SIGKILL", name, pid, timeout_s)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
