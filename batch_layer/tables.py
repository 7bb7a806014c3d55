"""The batch layer's Delta tables: names, schemas, paths and creation.

Every table is a directory under ``settings.path("delta")``. The serving layer
reads them with the ``deltalake`` package (delta-rs), so they are created
without deletion vectors and other table features delta-rs 1.6 may not read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from delta import exceptions as delta_errors
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql.types import (DateType, IntegerType, LongType, MapType, StringType, StructField,
                               StructType)

from shared_logic.settings import Settings

logger = logging.getLogger(__name__)

RAW_CLICKS = "raw_clicks"
CLICKS_DEDUPED = "clicks_deduped"
GOLD_MINUTE = "billing_clicks_minute"
GOLD_HOURLY = "billing_clicks_hourly"
GOLD_DAILY = "billing_clicks_daily"
BATCH_RUNS = "batch_runs"
GOLD_TABLES = {"minute": GOLD_MINUTE, "hour": GOLD_HOURLY, "day": GOLD_DAILY}


def _field(name: str, data_type, nullable: bool = True) -> StructField:
    return StructField(name, data_type, nullable)


RAW_CLICKS_SCHEMA = StructType([
    _field("click_id", StringType()),
    _field("ad_id", StringType()),
    _field("user_id", StringType()),
    _field("event_time_ms", LongType()),
    _field("timestamp", StringType()),
    _field("click_id_source", StringType()),
    _field("attributes", MapType(StringType(), StringType())),
    _field("received_at_ms", LongType()),
    _field("kafka_partition", IntegerType(), False),
    _field("kafka_offset", LongType(), False),
    _field("kafka_timestamp_ms", LongType()),
    _field("ingest_time_ms", LongType(), False),
    _field("event_date", DateType()),
])

CLICKS_DEDUPED_SCHEMA = StructType([
    _field("billing_day", DateType(), False),
    _field("click_id", StringType()),
    _field("ad_id", StringType()),
    _field("user_id", StringType()),
    _field("event_time_ms", LongType()),
    _field("kafka_partition", IntegerType()),
    _field("kafka_offset", LongType()),
    _field("ingest_time_ms", LongType()),
    _field("copies", IntegerType(), False),
    _field("non_billable_reason", StringType()),
])

GOLD_SCHEMA = StructType([
    _field("billing_day", DateType(), False),
    _field("ad_id", StringType(), False),
    _field("bucket_start_ms", LongType(), False),
    _field("bucket_end_ms", LongType(), False),
    _field("clicks", LongType(), False),
    _field("duplicates_removed", LongType(), False),
    _field("run_id", StringType(), False),
])

BATCH_RUNS_SCHEMA = StructType([
    _field("run_id", StringType(), False),
    _field("billing_day", DateType(), False),
    _field("status", StringType(), False),
    _field("started_at_ms", LongType(), False),
    _field("ended_at_ms", LongType()),
    _field("input_rows", LongType()),
    _field("max_ingest_time_ms", LongType()),
    _field("kafka_offsets", StringType()),
    _field("billable_clicks", LongType()),
    _field("duplicates_removed", LongType()),
    _field("non_billable_clicks", LongType()),
    _field("billing_timezone", StringType(), False),
    _field("error", StringType()),
])

# Table name -> (schema, partition column).
TABLES = {
    RAW_CLICKS: (RAW_CLICKS_SCHEMA, "event_date"),
    CLICKS_DEDUPED: (CLICKS_DEDUPED_SCHEMA, "billing_day"),
    GOLD_MINUTE: (GOLD_SCHEMA, "billing_day"),
    GOLD_HOURLY: (GOLD_SCHEMA, "billing_day"),
    GOLD_DAILY: (GOLD_SCHEMA, "billing_day"),
    BATCH_RUNS: (BATCH_RUNS_SCHEMA, "billing_day"),
}

TABLE_PROPERTIES = {"delta.enableDeletionVectors": "false"}

# Delta's optimistic-concurrency conflicts. In delta-spark 4.4 the raised
# classes derive from these, but not from DeltaConcurrentModificationException.
CONCURRENT_MODIFICATION_ERRORS = (
    delta_errors.DeltaConcurrentModificationException,
    delta_errors.ConcurrentWriteException,
    delta_errors.ConcurrentAppendException,
    delta_errors.ConcurrentDeleteReadException,
    delta_errors.ConcurrentDeleteDeleteException,
    delta_errors.ConcurrentTransactionException,
    delta_errors.MetadataChangedException,
    delta_errors.ProtocolChangedException,
)


def table_path(settings: Settings, table: str) -> Path:
    return settings.path("delta", table)


def ensure_table(spark: SparkSession, settings: Settings, table: str) -> DeltaTable:
    """Create ``table`` empty if it does not exist yet, and return it."""
    schema, partition_column = TABLES[table]
    path = str(table_path(settings, table))
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    builder = builder.partitionedBy(partition_column)
    for key, value in TABLE_PROPERTIES.items():
        builder = builder.property(key, value)
    try:
        delta_table = builder.execute()
    except CONCURRENT_MODIFICATION_ERRORS:
        # Another job created it between the existence check and the commit.
        logger.info("table %s was created concurrently at %s", table, path)
        delta_table = DeltaTable.forPath(spark, path)
    return delta_table


def ensure_tables(spark: SparkSession, settings: Settings, tables=None) -> None:
    """Create the missing tables among ``tables`` (default: all), once per process and path."""
    for table in tables or TABLES:
        path = str(table_path(settings, table))
        if path not in _known_tables:
            ensure_table(spark, settings, table)
            _known_tables.add(path)


# Paths of tables this process created or found, so that each run does not
# check them again. A table deleted while the process runs is not noticed.
_known_tables: set[str] = set()


def latest_version(spark: SparkSession, settings: Settings, table: str) -> int:
    """Return the latest committed version of ``table``, without running a Spark job."""
    path = str(table_path(settings, table))
    # forPath brings the table's log up to date; reading the version from that
    # snapshot is cheaper than DESCRIBE HISTORY, which runs a job.
    DeltaTable.forPath(spark, path)
    delta_log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
    return delta_log.unsafeVolatileSnapshot().version()
