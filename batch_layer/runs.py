"""The ``batch_runs`` table: one row per recompute, its claim on a day, and dirty days.

A run first claims its billing day by inserting a 'running' row with a MERGE
that inserts only when no unexpired 'running' row exists for that day. The
table is partitioned by billing day, so claims for different days touch
different files and never conflict. Two claims for the same day either find
each other's row or conflict in Delta's optimistic concurrency check, which
fails the later commit. So only one run of a day writes its tables.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_layer.tables import (BATCH_RUNS, BATCH_RUNS_SCHEMA, CONCURRENT_MODIFICATION_ERRORS, RAW_CLICKS,
                                ensure_tables, table_path)
from shared_logic import spark_rules
from shared_logic.settings import Settings
from shared_logic.time_buckets import day_bounds_ms
from shared_logic.timestamps import now_ms

logger = logging.getLogger(__name__)

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
MAX_ERROR_LENGTH = 4_000


class DayAlreadyClaimed(RuntimeError):
    """Another run of the same billing day has claimed it and is still running."""


@dataclass(frozen=True)
class RunTotals:
    input_rows: int
    max_ingest_time_ms: int | None
    kafka_offsets: dict[int, int]
    billable_clicks: int
    duplicates_removed: int
    non_billable_clicks: int


def _runs_table(spark: SparkSession, settings: Settings) -> DeltaTable:
    return DeltaTable.forPath(spark, str(table_path(settings, BATCH_RUNS)))


def _day_condition(day: date, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return f"{prefix}billing_day = DATE'{day.isoformat()}'"


def claim_day(spark: SparkSession, settings: Settings, day: date, run_id: str, started_at_ms: int) -> None:
    """Insert the 'running' row of ``run_id``, or raise DayAlreadyClaimed.

    A 'running' row older than ``recompute_lease_s`` belongs to a run that
    crashed without recording its end, and its claim has expired.
    """
    claim = spark.createDataFrame(
        [(run_id, day, RUNNING, started_at_ms, None, None, None, None, None, None, None,
          settings.billing_timezone, None)],
        BATCH_RUNS_SCHEMA,
    )
    lease_start_ms = started_at_ms - settings.recompute_lease_s * 1000
    # The ON clause uses only the day literal and target columns, so the merge
    # reads one partition and conflicts only with claims for the same day.
    active_run = (f"{_day_condition(day, 'runs')} AND runs.status = '{RUNNING}' "
                  f"AND runs.started_at_ms >= {lease_start_ms}")
    try:
        metrics = (_runs_table(spark, settings).alias("runs")
                   .merge(claim.alias("claim"), active_run)
                   .whenNotMatchedInsertAll()
                   .execute()
                   .first())
    except CONCURRENT_MODIFICATION_ERRORS as exc:
        raise DayAlreadyClaimed(
            f"run {run_id}: another run claimed billing day {day} at the same time; "
            f"wait for it to end, then run again ({type(exc).__name__})") from exc

    if metrics["num_inserted_rows"] != 1:
        holders = (read_runs(spark, settings).where(_day_condition(day))
                   .where((F.col("status") == RUNNING) & (F.col("started_at_ms") >= lease_start_ms))
                   .select("run_id").collect())
        holder_ids = ", ".join(sorted(row["run_id"] for row in holders))
        raise DayAlreadyClaimed(
            f"run {run_id}: billing day {day} is claimed by running run {holder_ids}; wait for it "
            f"to end, or after recompute_lease_s ({settings.recompute_lease_s} s) it is taken as crashed")
    logger.info("run %s claimed billing day %s", run_id, day)


def finish_run(spark: SparkSession, settings: Settings, day: date, run_id: str, totals: RunTotals) -> None:
    """Mark ``run_id`` succeeded and record its input and output totals."""
    offsets_json = json.dumps({str(p): o for p, o in sorted(totals.kafka_offsets.items())})
    values = {
        "status": F.lit(SUCCEEDED),
        "ended_at_ms": F.lit(now_ms()),
        "input_rows": F.lit(totals.input_rows),
        "max_ingest_time_ms": F.lit(totals.max_ingest_time_ms).cast("bigint"),
        "kafka_offsets": F.lit(offsets_json),
        "billable_clicks": F.lit(totals.billable_clicks),
        "duplicates_removed": F.lit(totals.duplicates_removed),
        "non_billable_clicks": F.lit(totals.non_billable_clicks),
    }
    _update_run(spark, settings, day, run_id, values)


def fail_run(spark: SparkSession, settings: Settings, day: date, run_id: str, error: str) -> None:
    values = {
        "status": F.lit(FAILED),
        "ended_at_ms": F.lit(now_ms()),
        "error": F.lit(error[:MAX_ERROR_LENGTH]),
    }
    _update_run(spark, settings, day, run_id, values)


def _update_run(spark: SparkSession, settings: Settings, day: date, run_id: str, values: dict) -> None:
    condition = F.expr(_day_condition(day)) & (F.col("run_id") == run_id)
    _runs_table(spark, settings).update(condition, values)


def read_runs(spark: SparkSession, settings: Settings) -> DataFrame:
    return spark.read.format("delta").load(str(table_path(settings, BATCH_RUNS)))


def dirty_days(spark: SparkSession, settings: Settings, closed_before_ms: int | None = None) -> list[date]:
    """Return the billing days whose raw clicks arrived after their last successful run.

    A day (in the billing time zone) is dirty when ``raw_clicks`` has a row
    of that day ingested after the ``max_ingest_time_ms`` of the day's last
    successful run under the same zone. A day with no such run is dirty too.
    With ``closed_before_ms``, only days that ended by then are returned.
    """
    # NOTE: this scans event_time_ms and ingest_time_ms of the whole raw table.
    # A large raw table would want the scan limited to the Delta versions
    # committed since the oldest successful run.
    ensure_tables(spark, settings, (RAW_CLICKS, BATCH_RUNS))
    zone = settings.billing_timezone
    raw_days = (
        spark.read.format("delta").load(str(table_path(settings, RAW_CLICKS)))
        .where(F.col("event_time_ms").isNotNull())
        .groupBy(spark_rules.billing_day(F.col("event_time_ms"), zone).alias("billing_day"))
        .agg(F.max("ingest_time_ms").alias("raw_max_ingest_time_ms"))
    )
    billed = (
        read_runs(spark, settings)
        .where((F.col("status") == SUCCEEDED) & (F.col("billing_timezone") == zone))
        .groupBy("billing_day")
        .agg(F.max(F.coalesce("max_ingest_time_ms", F.lit(-1))).alias("billed_max_ingest_time_ms"))
    )
    rows = (
        raw_days.join(billed, "billing_day", "left")
        .where(F.col("billed_max_ingest_time_ms").isNull()
               | (F.col("raw_max_ingest_time_ms") > F.col("billed_max_ingest_time_ms")))
        .select("billing_day").collect()
    )
    days = sorted(row["billing_day"] for row in rows)
    if closed_before_ms is not None:
        days = [day for day in days if day_bounds_ms(day, settings.billing_zone)[1] <= closed_before_ms]
    logger.info("dirty billing days in %s: %s", zone, ", ".join(map(str, days)) or "none")
    return days
