"""``adclick speed``: run the speed layer's Flink job until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
from pathlib import Path

import requests

from shared_logic.settings import Settings

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "speed", help="run the speed layer (Flink job: clicks -> click-counts)",
        description="Run the speed layer's Flink job in an embedded MiniCluster, or submit it to a "
                    "session cluster when ADCLICK_SPEED_DEPLOYMENT=session. SIGTERM or Ctrl-C cancels "
                    "the job, also on the session cluster, and keeps its checkpoints. A restart resumes "
                    "from the latest retained checkpoint.",
    )
    parser.add_argument("--restore-from", help="checkpoint or savepoint path to resume from "
                        "(default: the latest retained local checkpoint)")
    parser.set_defaults(handler=_run)


def _interrupt(_signum: int, _frame) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from speed_layer.runner import start_job

    log_file = settings.path("flink", "logs", settings.speed_job_name, "job.log")
    # The job runs in its own session, so a SIGTERM to this command (from
    # `adclick down` or a supervisor) must be passed on, like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    process = start_job(settings, log_file, args.restore_from)
    print(f"speed job {settings.speed_job_name} running (pid {process.pid}); log: {log_file}")
    try:
        return _exit_code(settings, process.wait(), log_file)
    except KeyboardInterrupt:
        if settings.speed_deployment == "session":
            return _cancel_session_job(settings, process)
        # In a MiniCluster the job cancels itself on SIGTERM and keeps its checkpoints.
        return _stop_job_process(process)


def _exit_code(settings: Settings, returncode: int, log_file: Path) -> int:
    """Log how the job's process ended and return an exit code for this command (1 on failure)."""
    if returncode == 0:
        logger.info("speed job %s ended", settings.speed_job_name)
        return 0
    cause = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    logger.error("speed job %s stopped unexpectedly (%s). See %s, then run `adclick speed` again to resume "
                 "from the latest checkpoint", settings.speed_job_name, cause, log_file)
    return 1


def _stop_job_process(process: subprocess.Popen, grace_s: float = 0.0) -> int:
    """Wait ``grace_s`` for the job's process to exit, then send SIGTERM, and SIGKILL it after 60 s.

    Returns the process's exit code.
    """
    try:
        return process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        logger.warning("speed job (pid %d) did not stop within 60 s; killing it", process.pid)
        process.kill()
        return process.wait()


def _cancel_session_job(settings: Settings, process: subprocess.Popen) -> int:
    """Cancel the job through the session cluster's REST API, then stop its `flink run` client.

    Returns the exit code: 0 when every job found ended CANCELED. A signal to
    the client alone does not reliably cancel the job on the cluster.
    """
    from speed_layer.runner import cancel_session_jobs

    try:
        states = cancel_session_jobs(settings)
        if states:
            # The client's driver polls the job's state, finds it CANCELED and exits by itself.
            _stop_job_process(process, grace_s=10.0)
        else:
            # The client may be submitting the job: stop it, then look again.
            _stop_job_process(process)
            states = cancel_session_jobs(settings)
    except (requests.RequestException, TimeoutError) as exc:
        logger.error("cancelling job %s on the session cluster at %s failed: %s; cancel it with "
                     "`flink cancel -m %s <job id>` or the cluster's web UI", settings.speed_job_name,
                     settings.flink_rest_address, exc, settings.flink_rest_address)
        _stop_job_process(process)
        return 1
    if not states:
        logger.warning("no unfinished job named %s on the session cluster at %s; nothing to cancel",
                       settings.speed_job_name, settings.flink_rest_address)
    return 0 if all(state == "CANCELED" for state in states) else 1
