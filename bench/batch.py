"""Benchmark the batch layer: recompute one billing day of raw clicks, against DuckDB.

``make bench-batch`` runs it. Spark generates ``--rows`` raw clicks (default
10 million) for one UTC day straight into a bronze ``raw_clicks`` table under a
temporary data directory, 2 % of them copies of another click id in another
Kafka partition. Then, in the same run and over the same Parquet files:

- Spark (local mode, the settings' master, driver memory and shuffle
  partitions) runs ``recompute_day``: silver, three gold tables, batch_runs;
- DuckDB runs the same deduplication (same tie-break, same non-billable rule)
  and the minute, hour and day aggregation, writing Parquet files, with as
  many threads as Spark has cores and a memory limit of DUCKDB_MEMORY_LIMIT.

Both results must give the same totals, or the benchmark fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import deltalake
import duckdb
from pyspark.sql import functions as F

from batch_layer.recompute import recompute_day
from batch_layer.spark_session import build_spark_session
from batch_layer.tables import GOLD_DAILY, RAW_CLICKS, RAW_CLICKS_SCHEMA, ensure_table, table_path
from bench.report import write_result
from shared_logic.settings import Settings, load_settings
from shared_logic.time_buckets import day_bounds_ms

logger = logging.getLogger("bench.batch")

DAY = date(2026, 12, 4)
ADS = 1_000
USERS = 100_000
DUPLICATE_SHARE = 0.02
KAFKA_PARTITIONS = 6
# DuckDB 1.5's arg_min over 10 million click ids ran out of memory at 1 GB and
# 2 GB, even with a database file to spill to, so it gets more than the Spark driver.
DUCKDB_MEMORY_LIMIT = "4GB"


def generate_raw_clicks(spark, settings: Settings, rows: int) -> None:
    """Write ``rows`` raw clicks of DAY into raw_clicks; copies share all click fields."""
    unique = int(rows * (1 - DUPLICATE_SHARE))
    day_start_ms, _ = day_bounds_ms(DAY, settings.billing_zone)
    click_number = F.col("id") % unique
    event_time_ms = F.lit(day_start_ms) + (click_number * 7_919) % 86_400_000
    columns = {
        "click_id": F.format_string("click-%012d", click_number),
        "ad_id": F.format_string("ad-%04d", (click_number * 31) % ADS),
        "user_id": F.format_string("user-%06d", (click_number * 17) % USERS),
        "event_time_ms": event_time_ms,
        "timestamp": F.date_format(F.timestamp_millis(event_time_ms), "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"),
        "click_id_source": F.lit("client"),
        "attributes": F.create_map(F.lit("country"), F.lit("DE")),
        # A copy (id >= unique) is received 2 s after the first copy.
        "received_at_ms": event_time_ms + 100 + F.when(F.col("id") >= unique, 2_000).otherwise(0),
        "kafka_partition": F.col("id") % KAFKA_PARTITIONS,
        "kafka_offset": F.floor(F.col("id") / KAFKA_PARTITIONS),
        "kafka_timestamp_ms": event_time_ms + 200,
        "ingest_time_ms": F.lit(day_start_ms + 86_400_000),
        "event_date": F.lit(DAY),
    }
    frame = spark.range(0, rows, numPartitions=8).select(*[
        columns[field.name].cast(field.dataType).alias(field.name) for field in RAW_CLICKS_SCHEMA.fields
    ])
    ensure_table(spark, settings, RAW_CLICKS)
    frame.write.format("delta").mode("append").save(str(table_path(settings, RAW_CLICKS)))


DUCKDB_SQL = """
CREATE OR REPLACE TEMP VIEW raw AS
    SELECT * FROM read_parquet({files})
    WHERE event_time_ms >= {day_start_ms} AND event_time_ms < {day_end_ms};
CREATE OR REPLACE TEMP TABLE silver AS
    SELECT kept.*, copies,
           CASE WHEN kept.click_id IS NULL OR trim(kept.click_id) = ''
                  OR kept.ad_id IS NULL OR trim(kept.ad_id) = ''
                  OR kept.user_id IS NULL OR trim(kept.user_id) = '' THEN 'missing_id'
                WHEN kept.event_time_ms IS NULL THEN 'missing_event_time'
                WHEN kept.received_at_ms IS NOT NULL
                 AND kept.event_time_ms > kept.received_at_ms + {max_future_skew_ms} THEN 'future_event_time'
           END AS non_billable_reason
    FROM (
        SELECT count(*) AS copies,
               arg_min({{'click_id': click_id, 'ad_id': ad_id, 'user_id': user_id,
                         'event_time_ms': event_time_ms, 'received_at_ms': received_at_ms,
                         'kafka_partition': kafka_partition, 'kafka_offset': kafka_offset,
                         'ingest_time_ms': ingest_time_ms}},
                       (coalesce(received_at_ms, kafka_timestamp_ms), kafka_timestamp_ms,
                        kafka_partition, kafka_offset)) AS kept
        FROM raw
        GROUP BY coalesce(click_id, printf('no-id:%d:%d', kafka_partition, kafka_offset))
    );
COPY silver TO '{out}/silver.parquet' (FORMAT parquet);
CREATE OR REPLACE TEMP TABLE minutes AS
    SELECT ad_id, event_time_ms - event_time_ms % 60000 AS bucket_start_ms,
           count(*) FILTER (WHERE non_billable_reason IS NULL) AS clicks,
           sum(copies - 1) AS duplicates_removed
    FROM silver GROUP BY ALL;
COPY (SELECT *, bucket_start_ms + 60000 AS bucket_end_ms FROM minutes WHERE ad_id IS NOT NULL)
    TO '{out}/minute.parquet' (FORMAT parquet);
COPY (SELECT ad_id, bucket_start_ms - bucket_start_ms % 3600000 AS hour_start_ms,
             sum(clicks) AS clicks, sum(duplicates_removed) AS duplicates_removed
      FROM minutes WHERE ad_id IS NOT NULL GROUP BY ALL)
    TO '{out}/hour.parquet' (FORMAT parquet);
COPY (SELECT ad_id, sum(clicks) AS clicks, sum(duplicates_removed) AS duplicates_removed
      FROM minutes WHERE ad_id IS NOT NULL GROUP BY ALL)
    TO '{out}/day.parquet' (FORMAT parquet);
"""


def run_duckdb(settings: Settings, files: list[str], out_dir: Path) -> tuple[float, tuple[int, int]]:
    """Run the dedup and aggregation in DuckDB and return (seconds, (clicks, duplicates_removed))."""
    day_start_ms, day_end_ms = day_bounds_ms(DAY, settings.billing_zone)
    threads = int(settings.spark_master.removeprefix("local[").removesuffix("]") or 1)
    # A database file, not an in-memory one, so DuckDB can spill tables to
    # disk as Spark spills its shuffles.
    connection = duckdb.connect(str(out_dir / "bench.duckdb"))
    connection.execute(f"SET threads = {threads}")
    connection.execute("SET preserve_insertion_order = false")
    connection.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    connection.execute(f"SET temp_directory = '{out_dir / 'spill'}'")
    file_list = "[" + ", ".join("'" + path.replace("'", "''") + "'" for path in files) + "]"
    script = DUCKDB_SQL.format(files=file_list, day_start_ms=day_start_ms, day_end_ms=day_end_ms,
                               max_future_skew_ms=settings.max_future_skew_s * 1000, out=out_dir)
    started = time.perf_counter()
    connection.execute(script)
    seconds = time.perf_counter() - started
    totals = connection.execute(
        f"SELECT sum(clicks), sum(duplicates_removed) FROM read_parquet('{out_dir}/day.parquet')").fetchone()
    connection.close()
    return seconds, (int(totals[0]), int(totals[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark one day's recompute against DuckDB.")
    parser.add_argument("--rows", type=int, default=10_000_000, help="raw clicks to generate (default: 10000000)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    work_dir = Path(tempfile.mkdtemp(prefix="adclick-bench-batch-"))
    settings = load_settings().replace(data_dir=work_dir, billing_timezone="UTC")
    load_before = os.getloadavg()[0]
    spark = build_spark_session(settings, "adclick-bench-batch")
    try:
        started = time.perf_counter()
        generate_raw_clicks(spark, settings, args.rows)
        logger.info("generated %d raw clicks in %.1f s under %s", args.rows, time.perf_counter() - started, work_dir)

        started = time.perf_counter()
        result = recompute_day(spark, settings, DAY)
        spark_s = time.perf_counter() - started
        daily = spark.read.format("delta").load(str(table_path(settings, GOLD_DAILY)))
        spark_totals = tuple(int(v) for v in daily.agg(F.sum("clicks"), F.sum("duplicates_removed")).first())
        logger.info("Spark recompute: %.1f s, totals %s, run %s", spark_s, spark_totals, result.run_id)
    finally:
        spark.stop()

    files = [uri.removeprefix("file://")
             for uri in deltalake.DeltaTable(str(table_path(settings, RAW_CLICKS))).file_uris()]
    duck_out = work_dir / "duckdb"
    duck_out.mkdir()
    duck_s, duck_totals = run_duckdb(settings, files, duck_out)
    logger.info("DuckDB over %d Parquet files: %.1f s, totals %s", len(files), duck_s, duck_totals)
    if duck_totals != spark_totals:
        raise SystemExit(f"totals differ: Spark {spark_totals}, DuckDB {duck_totals}")
    load_after = os.getloadavg()[0]

    notes = (f"{args.rows:,} raw clicks of one day, {DUPLICATE_SHARE:.0%} duplicates, {ADS} ads; "
             f"Spark {settings.spark_master}, driver {settings.spark_driver_memory}, "
             f"{settings.spark_shuffle_partitions} shuffle partitions; DuckDB same threads, "
             f"memory limit {DUCKDB_MEMORY_LIMIT}; "
             f"1-min load average {load_before:.1f} before, {load_after:.1f} after")
    write_result("batch", [
        {"metric": "recompute one day (silver + 3 gold tables + batch_runs)", "value": round(spark_s, 1),
         "unit": "s", "peer": "DuckDB, same dedup and aggregation over the same Parquet files",
         "peer_value": round(duck_s, 1), "ratio": round(spark_s / duck_s, 2), "notes": notes},
        {"metric": "recompute throughput", "value": round(args.rows / spark_s), "unit": "raw clicks/s",
         "peer": "DuckDB", "peer_value": round(args.rows / duck_s),
         "ratio": round(duck_s / spark_s, 3), "notes": notes},
    ])
    shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
