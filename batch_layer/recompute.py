"""Recompute one billing day from every raw click: silver, gold and the run record.

The steps, for day D in the billing time zone:
1. claim D in ``batch_runs`` (only one run of a day writes at a time);
2. read the raw clicks whose event time falls in D, at one pinned table version;
3. deduplicate by click id into silver ``clicks_deduped`` and flag non-billable clicks;
4. count billable clicks and removed duplicates per ad and minute, then roll
   the minutes up into local hours and the day, into the three gold tables;
5. record the run's input and totals in ``batch_runs``.

Every write replaces exactly the partition ``billing_day = D`` (Delta
``replaceWhere``), so a rerun over the same raw rows leaves every table as
one run left it, apart from the new ``batch_runs`` row.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_layer import runs
from batch_layer.tables import (CLICKS_DEDUPED, CLICKS_DEDUPED_SCHEMA, GOLD_DAILY, GOLD_HOURLY,
                                GOLD_MINUTE, GOLD_SCHEMA, RAW_CLICKS, ensure_tables, latest_version,
                                table_path)
from shared_logic import spark_rules
from shared_logic.settings import Settings
from shared_logic.time_buckets import MINUTE_MS, day_bounds_ms
from shared_logic.timestamps import now_ms

logger = logging.getLogger(__name__)

HOUR_MS = spark_rules.HOUR_MS


@dataclass(frozen=True)
class RunResult:
    run_id: str
    billing_day: date
    totals: runs.RunTotals
    table_versions: dict[str, int]


def new_run_id(day: date) -> str:
    return f"recompute-{day.isoformat()}-{uuid.uuid4().hex[:12]}"


def read_raw_day(spark: SparkSession, settings: Settings, day: date, version: int) -> DataFrame:
    """Return the raw clicks of billing day ``day`` at raw table version ``version``."""
    start_ms, end_ms = day_bounds_ms(day, settings.billing_zone)
    # A local day spans at most two UTC dates; naming them prunes partitions.
    first_utc_date = date(1970, 1, 1) + timedelta(days=start_ms // 86_400_000)
    last_utc_date = date(1970, 1, 1) + timedelta(days=(end_ms - 1) // 86_400_000)
    return (
        spark.read.format("delta").option("versionAsOf", version)
        .load(str(table_path(settings, RAW_CLICKS)))
        .where(F.col("event_date").between(F.lit(first_utc_date), F.lit(last_utc_date)))
        .where((F.col("event_time_ms") >= start_ms) & (F.col("event_time_ms") < end_ms))
    )


def deduplicate(raw_day: DataFrame, settings: Settings, day: date) -> DataFrame:
    """Return one row per click id, with ``copies`` and ``non_billable_reason``.

    The kept copy is the first received: smallest received_at_ms, then Kafka
    timestamp, partition and offset. Partition and offset are unique per raw
    row, so the choice does not depend on how Spark orders or splits the input.
    A row without a click id cannot be matched with any other and is kept alone.
    """
    # NOTE: copies of one client click id whose event times fall on different
    # billing days are deduplicated within each day only, because a run reads
    # one day. The speed layer keeps ids for dedup_ttl_s instead.
    has_id = ~(F.col("click_id").isNull() | (F.trim("click_id") == ""))
    dedup_key = F.when(has_id, F.col("click_id")).otherwise(
        F.format_string("\u0000no-id:%d:%d", "kafka_partition", "kafka_offset"))
    first_copy = F.min(F.struct(
        F.coalesce("received_at_ms", "kafka_timestamp_ms").alias("order_received_ms"),
        F.col("kafka_timestamp_ms").alias("order_kafka_ms"),
        "kafka_partition", "kafka_offset", "click_id", "ad_id", "user_id", "event_time_ms",
        "received_at_ms", "ingest_time_ms",
    ))
    kept = (
        raw_day.groupBy(dedup_key.alias("dedup_key"))
        .agg(F.count(F.lit(1)).cast("int").alias("copies"), first_copy.alias("kept"))
        .select("copies", "kept.*")
    )
    reason = spark_rules.non_billable_reason(
        click_id=F.col("click_id"), ad_id=F.col("ad_id"), user_id=F.col("user_id"),
        event_time_ms=F.col("event_time_ms"), received_at_ms=F.col("received_at_ms"),
        max_future_skew_s=settings.max_future_skew_s,
    )
    columns = {"billing_day": F.lit(day), "non_billable_reason": reason}
    return kept.select(*[
        columns.get(item.name, F.col(item.name)).cast(item.dataType).alias(item.name)
        for item in CLICKS_DEDUPED_SCHEMA.fields
    ])


def count_minutes(silver: DataFrame) -> DataFrame:
    """Count billable clicks, removed duplicates and non-billable clicks per ad and UTC minute."""
    billable = F.col("non_billable_reason").isNull()
    return (
        silver.groupBy("ad_id", spark_rules.minute_start_ms(F.col("event_time_ms")).alias("bucket_start_ms"))
        .agg(
            F.sum(F.when(billable, 1).otherwise(0)).cast("bigint").alias("clicks"),
            F.sum(F.col("copies") - 1).cast("bigint").alias("duplicates_removed"),
            F.sum(F.when(billable, 0).otherwise(1)).cast("bigint").alias("non_billable"),
        )
    )


def roll_up(minutes: DataFrame, bucket_start_ms, bucket_end_ms) -> DataFrame:
    """Sum minute counts into coarser buckets.

    Every zone offset in use today is a whole number of minutes, so each UTC
    minute lies inside one local hour and one local day.
    """
    return (
        minutes.groupBy("ad_id", bucket_start_ms.alias("bucket_start_ms"))
        .agg(F.sum("clicks").alias("clicks"), F.sum("duplicates_removed").alias("duplicates_removed"),
             F.sum("non_billable").alias("non_billable"))
        .withColumn("bucket_end_ms", bucket_end_ms)
    )


def to_gold(buckets: DataFrame, day: date, run_id: str) -> DataFrame:
    """Return gold rows: buckets of clicks with an ad id, in the gold schema."""
    columns = {"billing_day": F.lit(day), "run_id": F.lit(run_id)}
    return buckets.where(F.col("ad_id").isNotNull()).select(*[
        columns.get(item.name, F.col(item.name)).cast(item.dataType).alias(item.name)
        for item in GOLD_SCHEMA.fields
    ])


def replace_day(frame: DataFrame, settings: Settings, table: str, day: date) -> None:
    """Overwrite partition ``billing_day = day`` of ``table`` with ``frame``."""
    (frame.write.format("delta").mode("overwrite")
     .option("replaceWhere", f"billing_day = DATE'{day.isoformat()}'")
     .save(str(table_path(settings, table))))


def summarize_input(raw_day: DataFrame) -> tuple[int, int | None, dict[int, int]]:
    """Return the input row count, max ingest time and max offset per Kafka partition."""
    rows = (raw_day.groupBy("kafka_partition")
            .agg(F.count(F.lit(1)).alias("rows"), F.max("kafka_offset").alias("max_offset"),
                 F.max("ingest_time_ms").alias("max_ingest_time_ms"))
            .collect())
    input_rows = sum(row["rows"] for row in rows)
    ingest_times = [row["max_ingest_time_ms"] for row in rows if row["max_ingest_time_ms"] is not None]
    offsets = {row["kafka_partition"]: row["max_offset"] for row in rows}
    return input_rows, max(ingest_times, default=None), offsets


def recompute_day(spark: SparkSession, settings: Settings, day: date, run_id: str | None = None) -> RunResult:
    """Recompute billing day ``day`` and return its run id, totals and table versions.

    Raises ``runs.DayAlreadyClaimed`` when another run of the day is active.
    """
    run_id = run_id or new_run_id(day)
    ensure_tables(spark, settings)
    runs.claim_day(spark, settings, day, run_id, now_ms())
    try:
        result = _recompute_claimed_day(spark, settings, day, run_id)
    except Exception as exc:
        logger.exception("run %s for billing day %s failed", run_id, day)
        runs.fail_run(spark, settings, day, run_id, f"{type(exc).__name__}: {exc}")
        raise
    return result


def _recompute_claimed_day(spark: SparkSession, settings: Settings, day: date, run_id: str) -> RunResult:
    zone = settings.billing_timezone
    versions: dict[str, int] = {}

    # Source: the day's raw clicks at one pinned version, so every step reads the same rows.
    versions[RAW_CLICKS] = latest_version(spark, settings, RAW_CLICKS)
    raw_day = read_raw_day(spark, settings, day, versions[RAW_CLICKS])
    input_rows, max_ingest_time_ms, offsets = summarize_input(raw_day)
    logger.info("run %s: billing day %s (%s) has %d raw rows at %s version %d, max ingest time %s",
                run_id, day, zone, input_rows, RAW_CLICKS, versions[RAW_CLICKS], max_ingest_time_ms)

    # Silver: one row per click id.
    replace_day(deduplicate(raw_day, settings, day), settings, CLICKS_DEDUPED, day)
    versions[CLICKS_DEDUPED] = latest_version(spark, settings, CLICKS_DEDUPED)
    silver = (spark.read.format("delta").option("versionAsOf", versions[CLICKS_DEDUPED])
              .load(str(table_path(settings, CLICKS_DEDUPED)))
              .where(F.col("billing_day") == F.lit(day)))

    # Gold: minutes from silver, then hours and the day from the minutes.
    minutes = count_minutes(silver).cache()
    try:
        day_start_ms, day_end_ms = day_bounds_ms(day, settings.billing_zone)
        buckets = {
            GOLD_MINUTE: minutes.withColumn("bucket_end_ms", F.col("bucket_start_ms") + MINUTE_MS),
            GOLD_HOURLY: roll_up(minutes, spark_rules.hour_start_ms(F.col("bucket_start_ms"), zone),
                                 F.col("bucket_start_ms") + HOUR_MS),
            GOLD_DAILY: roll_up(minutes, F.lit(day_start_ms), F.lit(day_end_ms)),
        }
        for table, frame in buckets.items():
            replace_day(to_gold(frame, day, run_id), settings, table, day)
            versions[table] = latest_version(spark, settings, table)
        total = minutes.agg(F.sum("clicks").alias("clicks"),
                            F.sum("duplicates_removed").alias("duplicates_removed"),
                            F.sum("non_billable").alias("non_billable")).first()
    finally:
        minutes.unpersist()

    totals = runs.RunTotals(
        input_rows=input_rows, max_ingest_time_ms=max_ingest_time_ms, kafka_offsets=offsets,
        billable_clicks=int(total["clicks"] or 0), duplicates_removed=int(total["duplicates_removed"] or 0),
        non_billable_clicks=int(total["non_billable"] or 0),
    )
    runs.finish_run(spark, settings, day, run_id, totals)
    logger.info("run %s: billing day %s succeeded: %d billable clicks, %d duplicates removed, "
                "%d non-billable; table versions %s",
                run_id, day, totals.billable_clicks, totals.duplicates_removed,
                totals.non_billable_clicks, versions)
    return RunResult(run_id, day, totals, versions)


def recompute_dirty_days(spark: SparkSession, settings: Settings, closed_before_ms: int | None = None) -> list[RunResult]:
    """Recompute every dirty billing day that ended by ``closed_before_ms`` (default: now)."""
    closed_before_ms = now_ms() if closed_before_ms is None else closed_before_ms
    ensure_tables(spark, settings)
    results = []
    for day in runs.dirty_days(spark, settings, closed_before_ms):
        results.append(recompute_day(spark, settings, day))
    return results
