"""Inputs for serving tests: batch-layer Delta tables and transactional speed-layer records.

The Delta tables follow the batch layer's published schema exactly. Hourly
and daily gold rows are summed from the given minutes with the shared
time-bucket rules, as the batch layer does.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import date

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from kafka import KafkaProducer

from shared_logic.settings import Settings
from shared_logic.time_buckets import MINUTE_MS, billing_day, day_bounds_ms, hour_start_ms

GOLD_SCHEMA = pa.schema([
    ("billing_day", pa.date32()), ("ad_id", pa.string()), ("bucket_start_ms", pa.int64()),
    ("bucket_end_ms", pa.int64()), ("clicks", pa.int64()), ("duplicates_removed", pa.int64()),
    ("run_id", pa.string()),
])
RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("billing_day", pa.date32()), ("status", pa.string()),
    ("started_at_ms", pa.int64()), ("ended_at_ms", pa.int64()), ("input_rows", pa.int64()),
    ("max_ingest_time_ms", pa.int64()), ("kafka_offsets", pa.string()), ("billable_clicks", pa.int64()),
    ("duplicates_removed", pa.int64()), ("non_billable_clicks", pa.int64()), ("billing_timezone", pa.string()),
    ("error", pa.string()),
])
SILVER_SCHEMA = pa.schema([
    ("billing_day", pa.date32()), ("click_id", pa.string()), ("ad_id", pa.string()), ("user_id", pa.string()),
    ("event_time_ms", pa.int64()), ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
    ("ingest_time_ms", pa.int64()), ("copies", pa.int32()), ("non_billable_reason", pa.string()),
])
BRONZE_SCHEMA = pa.schema([
    ("click_id", pa.string()), ("ad_id", pa.string()), ("user_id", pa.string()), ("timestamp", pa.string()),
    ("event_time_ms", pa.int64()), ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
    ("ingest_time_ms", pa.int64()), ("event_date", pa.date32()),
])


def _rollup(minutes: list[dict], granularity: str, settings: Settings) -> list[dict]:
    zone = settings.billing_zone
    sums: dict[tuple[str, int], dict] = {}
    for row in minutes:
        if granularity == "hour":
            start = hour_start_ms(row["bucket_start_ms"], zone)
            end = start + 3_600_000
        else:
            start, end = day_bounds_ms(row["billing_day"], zone)
        key = (row["ad_id"], start)
        total = sums.setdefault(key, {**row, "bucket_start_ms": start, "bucket_end_ms": end, "clicks": 0,
                                      "duplicates_removed": 0})
        total["clicks"] += row["clicks"]
        total["duplicates_removed"] += row["duplicates_removed"]
    return list(sums.values())


def write_batch_run(settings: Settings, day: date, minutes: dict[tuple[str, int], int], *,
                    duplicates: dict[tuple[str, int], int] | None = None, status: str = "succeeded",
                    started_at_ms: int, run_id: str | None = None, billable_clicks: int | None = None,
                    max_ingest_time_ms: int | None = None, write_gold: bool = True) -> str:
    """Write one batch run of ``day``: its gold partition (replacing the day's) and its batch_runs row.

    ``minutes`` maps (ad_id, minute start ms) to billable clicks.
    """
    run_id = run_id or f"run-{day}-{uuid.uuid4().hex[:6]}"
    duplicates = duplicates or {}
    rows = [{"billing_day": day, "ad_id": ad, "bucket_start_ms": start, "bucket_end_ms": start + MINUTE_MS,
             "clicks": clicks, "duplicates_removed": duplicates.get((ad, start), 0), "run_id": run_id}
            for (ad, start), clicks in sorted(minutes.items())]
    for row in rows:
        assert billing_day(row["bucket_start_ms"], settings.billing_zone) == day, row
    if write_gold and status == "succeeded":
        for name, table_rows in (("billing_clicks_minute", rows),
                                 ("billing_clicks_hourly", _rollup(rows, "hour", settings)),
                                 ("billing_clicks_daily", _rollup(rows, "day", settings))):
            _replace_day(settings, name, day, pa.Table.from_pylist(table_rows, schema=GOLD_SCHEMA))
    total = sum(minutes.values()) if billable_clicks is None else billable_clicks
    run = {"run_id": run_id, "billing_day": day, "status": status, "started_at_ms": started_at_ms,
           "ended_at_ms": None if status == "running" else started_at_ms + 1000, "input_rows": total,
           "max_ingest_time_ms": max_ingest_time_ms, "kafka_offsets": json.dumps({"0": 0}),
           "billable_clicks": total if status == "succeeded" else None,
           "duplicates_removed": sum(duplicates.values()), "non_billable_clicks": 0,
           "billing_timezone": settings.billing_timezone, "error": "boom" if status == "failed" else None}
    write_deltalake(settings.path("delta", "batch_runs"), pa.Table.from_pylist([run], schema=RUNS_SCHEMA),
                    mode="append")
    return run_id


def update_run_status(settings: Settings, run_id: str, status: str) -> None:
    DeltaTable(settings.path("delta", "batch_runs")).update(
        predicate=f"run_id = '{run_id}'", updates={"status": f"'{status}'"})


def _replace_day(settings: Settings, name: str, day: date, table: pa.Table) -> None:
    path = settings.path("delta", name)
    if DeltaTable.is_deltatable(str(path)):
        write_deltalake(path, table, mode="overwrite", predicate=f"billing_day = '{day.isoformat()}'")
    else:
        write_deltalake(path, table, partition_by=["billing_day"])


def write_silver(settings: Settings, rows: list[dict]) -> None:
    write_deltalake(settings.path("delta", "clicks_deduped"), pa.Table.from_pylist(rows, schema=SILVER_SCHEMA),
                    mode="append", partition_by=["billing_day"])


def write_bronze(settings: Settings, rows: list[dict]) -> None:
    write_deltalake(settings.path("delta", "raw_clicks"), pa.Table.from_pylist(rows, schema=BRONZE_SCHEMA),
                    mode="append", partition_by=["event_date"])


def count_record(ad_id: str, window_start_ms: int, clicks: int, is_final: bool = True,
                 computed_at_ms: int = 0) -> dict:
    return {"ad_id": ad_id, "window_start_ms": window_start_ms, "window_end_ms": window_start_ms + MINUTE_MS,
            "clicks": clicks, "is_final": is_final, "computed_at_ms": computed_at_ms}


def produce_transaction(settings: Settings, topic: str, records: list[dict], *, commit: bool = True) -> None:
    """Write ``records`` to ``topic`` in one Kafka transaction, then commit or abort it."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                             transactional_id=f"serving-test-{uuid.uuid4().hex[:8]}")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for record in records:
            key = {"ad_id": record["ad_id"], "window_start_ms": record.get("window_start_ms",
                                                                          record.get("event_time_ms"))}
            producer.send(topic, key=json.dumps(key).encode(), value=json.dumps(record).encode())
        producer.flush()
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    finally:
        producer.close()


def drain(ingest, timeout_s: float = 30.0) -> int:
    """Poll ``ingest`` until it has read every partition to its end; return the records applied."""
    applied = 0
    deadline = time.monotonic() + timeout_s
    while True:
        applied += ingest.poll_once()
        if not any(ingest.lag_by_partition().values()):
            return applied
        if time.monotonic() > deadline:
            raise TimeoutError(f"ingest still lags after {timeout_s} s: {ingest.lag_by_partition()}")
