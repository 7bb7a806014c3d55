"""``adclick speed``: run the speed layer's Flink job until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess

from shared_logic.settings import Settings

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "speed", help="run the speed layer (Flink job: clicks -> click-counts)",
        description="Run the speed layer's Flink job in an embedded MiniCluster, or submit it to a "
                    "session cluster when ADCLICK_SPEED_DEPLOYMENT=session. A restart resumes from "
                    "the latest retained checkpoint.",
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
        return process.wait()
    except KeyboardInterrupt:
        # The job cancels itself on SIGTERM and keeps its checkpoints.
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            logger.warning("speed job (pid %d) did not stop within 60 s; killing it", process.pid)
            process.kill()
            return process.wait()
