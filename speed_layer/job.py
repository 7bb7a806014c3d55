"""The speed layer's Flink job: provisional and final per-ad minute counts.

Run it with the PyFlink interpreter: ``.venv-flink/bin/python -m
speed_layer.job`` runs it in an embedded MiniCluster (what ``adclick speed``
does), and ``flink run -py speed_layer/job.py`` submits the same file to a
session cluster. Settings come from ``ADCLICK_*`` environment variables.

Pipeline: Kafka source (event time, per-partition watermarks, idleness) ->
ROW_NUMBER deduplication on click_id -> lateness split -> provisional and
final minute windows -> merge per (ad_id, window_start_ms) -> exactly-once
Kafka sinks. The SQL is in speed_layer/statements.py.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
import time
from pathlib import Path

from shared_logic.settings import Settings, load_settings
from speed_layer.checkpoints import checkpoint_uri, latest_checkpoint, local_checkpoint_dir
from speed_layer.statements import build_statements

logger = logging.getLogger("speed_layer.job")

KAFKA_CONNECTOR_JAR = "flink-sql-connector-kafka-5.0.0-2.2.jar"
TERMINAL_STATES = ("FINISHED", "CANCELED", "FAILED")


class JobStopped(Exception):
    """SIGTERM or SIGINT asked the job to stop."""


def job_configuration(settings: Settings, restore_path: str | None) -> dict[str, str]:
    """Return the Flink configuration of the speed job."""
    connector_jar = Path(settings.jars_dir, "flink", KAFKA_CONNECTOR_JAR)
    if not connector_jar.exists():
        raise FileNotFoundError(f"Kafka SQL connector jar not found at {connector_jar}; run `make setup`")
    config = {
        "pipeline.name": settings.speed_job_name,
        "pipeline.jars": connector_jar.as_uri(),
        "parallelism.default": str(settings.flink_parallelism),
        "python.executable": str(settings.flink_python),
        "python.client.executable": str(settings.flink_python),
        "table.local-time-zone": "UTC",
        # Exactly-once checkpoints, retained when the job is cancelled or killed.
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_s} s",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.dir": checkpoint_uri(settings),
        "execution.checkpointing.num-retained": "3",
        "state.backend.type": settings.state_backend,
        "state.backend.incremental": "true" if settings.state_backend == "rocksdb" else "false",
        "restart-strategy.type": "exponential-delay",
        # State TTL bounds the deduplication state (click ids) and the per-window
        # aggregates; Flink's state TTL counts processing time.
        "table.exec.state.ttl": f"{settings.dedup_ttl_s} s",
        # Partitions without clicks or heartbeats stop holding the watermark back after this.
        "table.exec.source.idle-timeout": f"{settings.source_idle_timeout_s} s",
        # The three INSERTs read one deduplication view. Without this option
        # the planner prunes columns per INSERT and builds a second
        # deduplication for clicks-late, whose lateness filter then reads the
        # watermark at other moments than the counts' filter. With it, one
        # deduplication operator feeds every filter, so each click is either
        # counted or late, in both late sinks alike.
        "table.optimizer.reuse-optimize-block-with-digest-enabled": "true",
        # Local-global aggregation for the event-time window: a hot ad is
        # pre-aggregated on every subtask before the shuffle.
        "table.optimizer.agg-phase-strategy": "TWO_PHASE",
        # Rows of one key all come from one group aggregate subtask in order,
        # so the sink needs no upsert materializer.
        "table.exec.sink.upsert-materialize": "NONE",
        # Mini-batch stays off: its processing-time assigner replaces the
        # event-time watermarks downstream (seen in the 2.2 plan), which would
        # break CURRENT_WATERMARK and the event-time window. The
        # processing-time window does the batching instead.
        "table.exec.mini-batch.enabled": "false",
    }
    if restore_path:
        config["execution.state-recovery.path"] = restore_path
    return config


def find_restore_path(settings: Settings, explicit: str | None) -> str | None:
    """Return the checkpoint to resume from: the explicit one, else the latest local one."""
    if explicit:
        return explicit
    directory = local_checkpoint_dir(settings)
    if directory is None or not directory.exists():
        # NOTE: checkpoints on a remote file system are not searched; pass
        # --restore-from with a chk-N path to resume from one.
        return None
    latest = latest_checkpoint(directory)
    return latest.uri if latest else None


def statement_set(settings: Settings, restore_path: str | None):
    """Return the job's configured statement set, not yet submitted."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    table_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = table_env.get_config()
    for key, value in job_configuration(settings, restore_path).items():
        config.set(key, value)

    statements = build_statements(settings)
    for ddl in statements.ddl:
        table_env.execute_sql(ddl)
    inserts = table_env.create_statement_set()
    for insert in statements.inserts:
        inserts.add_insert_sql(insert)
    return inserts


def submit(settings: Settings, restore_path: str | None):
    """Submit the statement set; return the JobClient."""
    return statement_set(settings, restore_path).execute().get_job_client()


def monitor(job_client, settings: Settings, poll_s: float = 1.0) -> str:
    """Log status changes and completed checkpoints until the job ends; return its final state."""
    job_id = str(job_client.get_job_id())
    directory = local_checkpoint_dir(settings)
    last_status = None
    last_checkpoint = None
    while True:
        status = job_client.get_job_status().result().name
        if status != last_status:
            log = logger.warning if status in ("RESTARTING", "FAILING", "FAILED") else logger.info
            log("job %s (%s) is %s", settings.speed_job_name, job_id, status)
            last_status = status
        if status in TERMINAL_STATES:
            return status
        if directory is not None and directory.exists():
            latest = latest_checkpoint(directory)
            if latest is not None and latest.path != last_checkpoint:
                logger.info("job %s (%s) completed checkpoint %d at %s",
                            settings.speed_job_name, job_id, latest.checkpoint_id, latest.uri)
                last_checkpoint = latest.path
        time.sleep(poll_s)


def _raise_stop(signum, _frame):
    raise JobStopped(signal.Signals(signum).name)


def run(settings: Settings, restore_from: str | None = None) -> int:
    restore_path = find_restore_path(settings, restore_from)
    if restore_path:
        logger.info("job %s restores from checkpoint %s", settings.speed_job_name, restore_path)
    else:
        logger.info("job %s starts without a checkpoint; the source starts at the committed "
                    "offsets of group %s, else at the earliest", settings.speed_job_name,
                    settings.speed_job_name)
    logger.info("job %s: topics %s -> %s, %s, %s; state backend %s; checkpoints every %d s in %s",
                settings.speed_job_name, settings.topic_clicks, settings.topic_click_counts,
                settings.topic_late_counts, settings.topic_clicks_late, settings.state_backend,
                settings.checkpoint_interval_s, checkpoint_uri(settings))

    job_client = submit(settings, restore_path)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        status = monitor(job_client, settings)
    except JobStopped as stop:
        logger.info("job %s received %s; cancelling it, checkpoints are retained",
                    settings.speed_job_name, stop)
        job_client.cancel().result()
        return 0
    return 0 if status != "FAILED" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the speed layer's Flink job.")
    parser.add_argument("--restore-from", help="checkpoint or savepoint path to resume from "
                        "(default: the latest retained local checkpoint)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    parser.add_argument("--explain", action="store_true",
                        help="print the optimized plan of the job and exit without submitting it")
    args = parser.parse_args(argv)
    if args.explain:
        print(statement_set(load_settings(), None).explain())
        return 0
    # `kill -USR1 <pid>` dumps the Python stacks, for a job that seems stuck.
    faulthandler.register(signal.SIGUSR1)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # PyFlink's Beam worker module sets the root logger to WARNING when the
    # job is submitted, so this package keeps its own level.
    logging.getLogger("speed_layer").setLevel(args.log_level.upper())
    return run(load_settings(), args.restore_from)


if __name__ == "__main__":
    sys.exit(main())
