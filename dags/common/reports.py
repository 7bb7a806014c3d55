"""The reconciliation report task: ``adclick report reconcile --day`` in a child process.

The serving layer's command writes a CSV and an HTML report of speed-layer
against batch totals under ``reports_dir``. It exits with 0 when every
difference is explained, 1 when it flags ads and 2 when it cannot build the
report. Flagged ads are a finding for an operator, not a failed run, so the
task logs a warning and succeeds. Any other exit code fails the task.

In production ``adclick serve`` runs all the time, and the command asks it
for the report, waiting until its batch loader has closed the day with the
run that this DAG run checked. When no server responds, the command brings
the serving store up to date itself (one catch-up pass over Kafka and
Delta) and reconciles from the file.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from shared_logic.settings import PROJECT_ROOT, Settings

logger = logging.getLogger(__name__)

OUTPUT_TAIL_CHARS = 4_000
EXIT_CLEAN, EXIT_FLAGGED = 0, 1


class ReportError(RuntimeError):
    """The reconciliation command failed without writing a report."""


def write_reconciliation_report(settings: Settings, day: date, run_id: str,
                                batch_run_id: str) -> dict[str, Any]:
    """Run the reconciliation command for ``day`` against ``batch_run_id``; return its files and status."""
    started = time.time()
    # Half the task's timeout goes to waiting for the serving layer; the rest
    # is left for a catch-up pass and writing the files.
    wait_for_batch_s = settings.airflow_check_timeout_s // 2
    command = [sys.executable, "-m", "infra.cli", "report", "reconcile", "--day", day.isoformat(),
               "--batch-run-id", batch_run_id, "--wait-for-batch-s", str(wait_for_batch_s)]
    logger.info("Reconciling: run_id=%s billing_day=%s batch_run_id=%s wait_for_batch_s=%s",
                run_id, day, batch_run_id, wait_for_batch_s)
    completed = subprocess.run(
        command, cwd=PROJECT_ROOT, env=_child_environment(settings),
        capture_output=True, text=True, check=False,
        timeout=settings.airflow_check_timeout_s,
    )
    output = (completed.stdout + completed.stderr)[-OUTPUT_TAIL_CHARS:]
    reports = _reports_written_since(settings.reports_dir, day, started)
    if completed.returncode not in (EXIT_CLEAN, EXIT_FLAGGED) or not reports:
        raise ReportError(
            f"`{' '.join(command[2:])}` failed with exit code {completed.returncode} and wrote "
            f"{len(reports)} report file(s) for {day} under {settings.reports_dir}; output: {output}"
        )
    flagged = completed.returncode == EXIT_FLAGGED
    if flagged:
        logger.warning("Reconciliation flagged rows: run_id=%s billing_day=%s reports=%s output=%s",
                       run_id, day, [str(path) for path in reports], output)
    else:
        logger.info("Reconciliation clean: run_id=%s billing_day=%s reports=%s",
                    run_id, day, [str(path) for path in reports])
    return {"billing_day": day.isoformat(), "flagged": flagged,
            "reports": [str(path) for path in reports]}


def _child_environment(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.to_environ()}


def _reports_written_since(reports_dir: Path, day: date, since_s: float) -> list[Path]:
    if not reports_dir.exists():
        return []
    return sorted(path for path in reports_dir.rglob(f"*{day.isoformat()}*")
                  if path.is_file() and path.stat().st_mtime >= since_s - 1)
