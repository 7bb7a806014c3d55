"""Fixtures and row builders for the batch layer's tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared_logic.settings import Settings, load_settings
from shared_logic.timestamps import parse_timestamp_ms


@pytest.fixture
def delta_settings(tmp_path: Path) -> Settings:
    """Settings with an empty data directory of this test, for tests without Kafka."""
    return load_settings({}).replace(data_dir=tmp_path)


def raw_row(timestamp: str, *, ad_id: str = "ad-1", click_id: str | None = None, user_id: str = "user-1",
            partition: int = 0, offset: int | None = None, ingest_time_ms: int = 1,
            received_delay_ms: int = 1_000, **overrides) -> dict:
    """Return one raw_clicks row for a click at ``timestamp`` (ISO-8601 with a zone)."""
    event_time_ms = parse_timestamp_ms(timestamp)
    row = {
        "click_id": click_id if click_id is not None else uuid.uuid4().hex,
        "ad_id": ad_id,
        "user_id": user_id,
        "event_time_ms": event_time_ms,
        "timestamp": timestamp,
        "click_id_source": "client",
        "attributes": {},
        "received_at_ms": event_time_ms + received_delay_ms,
        "kafka_partition": partition,
        "kafka_offset": offset if offset is not None else next(_offsets),
        "kafka_timestamp_ms": event_time_ms + received_delay_ms,
        "ingest_time_ms": ingest_time_ms,
    }
    row.update(overrides)
    return row


def _offset_counter():
    offset = 0
    while True:
        offset += 1
        yield offset


_offsets = _offset_counter()


def append_raw(spark, settings: Settings, rows: list[dict]) -> None:
    """Append rows to raw_clicks as the landing job would, bypassing Kafka."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    from batch_layer.tables import RAW_CLICKS, RAW_CLICKS_SCHEMA, ensure_table, table_path
    from shared_logic import spark_rules

    ensure_table(spark, settings, RAW_CLICKS)
    schema_without_date = [field for field in RAW_CLICKS_SCHEMA.fields if field.name != "event_date"]
    frame = spark.createDataFrame([tuple(row[f.name] for f in schema_without_date) for row in rows],
                                  StructType(schema_without_date))
    frame = frame.withColumn("event_date", spark_rules.utc_date(F.col("event_time_ms")))
    frame.write.format("delta").mode("append").save(str(table_path(settings, RAW_CLICKS)))
