"""Land every record of the ``clicks`` topic in the bronze Delta table ``raw_clicks``.

A Structured Streaming query reads Kafka and appends to Delta. The query's
checkpoint stores the Kafka offsets of each micro-batch, and the Delta sink
commits each micro-batch once under its batch id, so a stopped, rerun or
killed job neither loses nor repeats a record.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import BooleanType, LongType, MapType, StringType, StructField, StructType

from batch_layer.tables import RAW_CLICKS, RAW_CLICKS_SCHEMA, ensure_table, table_path
from shared_logic import spark_rules
from shared_logic.heartbeats import HEARTBEAT_FIELD, not_heartbeat_sql
from shared_logic.settings import Settings

logger = logging.getLogger(__name__)

QUERY_NAME = "land_raw_clicks"

# The JSON value the collector writes to the clicks topic.
CLICK_RECORD_SCHEMA = StructType([
    StructField("click_id", StringType()),
    StructField("ad_id", StringType()),
    StructField("user_id", StringType()),
    StructField("timestamp", StringType()),
    StructField("event_time_ms", LongType()),
    StructField("click_id_source", StringType()),
    # Attribute values are JSON scalars; Spark keeps a number or boolean as its JSON text.
    StructField("attributes", MapType(StringType(), StringType())),
    StructField("received_at_ms", LongType()),
    # Set only on the collector's watermark heartbeats, which are not clicks.
    StructField(HEARTBEAT_FIELD, BooleanType()),
])


def read_clicks(spark: SparkSession, settings: Settings) -> DataFrame:
    """Return the clicks topic as a streaming DataFrame, from the earliest offsets."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
        .option("subscribe", settings.topic_clicks)
        .option("startingOffsets", "earliest")
        .option("kafka.isolation.level", "read_committed")
        # A record deleted by retention before it landed is an error, not a silent gap.
        .option("failOnDataLoss", "true")
    )
    if settings.landing_max_offsets_per_trigger > 0:
        reader = reader.option("maxOffsetsPerTrigger", settings.landing_max_offsets_per_trigger)
    return reader.load()


def to_raw_clicks(kafka_records: DataFrame) -> DataFrame:
    """Parse Kafka records into rows of ``raw_clicks``.

    A value that is not a JSON object still lands, with null click fields,
    so the raw table contains every record of the topic except the watermark
    heartbeats (shared_logic/heartbeats.py), which carry no click.
    """
    click = F.from_json(F.col("value").cast("string"), CLICK_RECORD_SCHEMA).alias("click")
    event_time_ms: Column = F.col("click.event_time_ms")
    columns = {
        "click_id": F.col("click.click_id"),
        "ad_id": F.col("click.ad_id"),
        "user_id": F.col("click.user_id"),
        "event_time_ms": event_time_ms,
        "timestamp": F.col("click.timestamp"),
        "click_id_source": F.col("click.click_id_source"),
        "attributes": F.col("click.attributes"),
        "received_at_ms": F.col("click.received_at_ms"),
        "kafka_partition": F.col("partition"),
        "kafka_offset": F.col("offset"),
        "kafka_timestamp_ms": F.unix_millis(F.col("timestamp")),
        # current_timestamp() is fixed for a micro-batch, so one batch shares one ingest time.
        "ingest_time_ms": F.unix_millis(F.current_timestamp()),
        "event_date": spark_rules.utc_date(event_time_ms),
    }
    parsed = (kafka_records.select("partition", "offset", "timestamp", click)
              .where(F.expr(not_heartbeat_sql(f"click.{HEARTBEAT_FIELD}"))))
    return parsed.select(*[columns[item.name].cast(item.dataType).alias(item.name)
                           for item in RAW_CLICKS_SCHEMA.fields])


def start_landing(spark: SparkSession, settings: Settings, once: bool) -> StreamingQuery:
    """Start the landing query; with ``once`` it stops after the offsets present at start."""
    ensure_table(spark, settings, RAW_CLICKS)
    checkpoint = settings.landing_checkpoint_dir
    writer = (
        to_raw_clicks(read_clicks(spark, settings))
        .writeStream.queryName(QUERY_NAME)
        .format("delta")
        .outputMode("append")
        .option("checkpointLocation", str(checkpoint))
        .partitionBy("event_date")
    )
    if once:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{settings.landing_trigger_interval_s} seconds")
    query = writer.start(str(table_path(settings, RAW_CLICKS)))
    logger.info("landing query %s started: topic %s -> %s, checkpoint %s, once=%s",
                query.id, settings.topic_clicks, table_path(settings, RAW_CLICKS), checkpoint, once)
    return query


def _log_progress(query: StreamingQuery, last_batch_id: int) -> int:
    for progress in query.recentProgress:
        if progress["batchId"] <= last_batch_id:
            continue
        last_batch_id = progress["batchId"]
        end_offsets = [source.get("endOffset") for source in progress.get("sources", [])]
        logger.info("landing batch %s: %s rows, Kafka end offsets %s",
                    last_batch_id, progress["numInputRows"], end_offsets)
    return last_batch_id


def run_landing(spark: SparkSession, settings: Settings, once: bool, poll_interval_s: float = 5.0) -> None:
    """Run the landing query until it ends (``once``) or the process is stopped."""
    query = start_landing(spark, settings, once)
    last_batch_id = -1
    try:
        while not query.awaitTermination(poll_interval_s):
            last_batch_id = _log_progress(query, last_batch_id)
        _log_progress(query, last_batch_id)
    except KeyboardInterrupt:
        logger.info("landing query %s stopping on interrupt", query.id)
        query.stop()
    exception = query.exception()
    if exception is not None:
        raise RuntimeError(f"landing query {query.id} failed: {exception}")
    logger.info("landing query %s stopped", query.id)
