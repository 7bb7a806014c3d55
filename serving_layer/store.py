"""The serving layer's DuckDB database: tables and the transactions that write them.

One process owns the database file. Writers (the Kafka ingest and the Delta
loader) and readers (the HTTP API) each take their own cursor of the one
connection. Each cursor has its own transactions, and DuckDB's MVCC gives
every read transaction one snapshot.

Tables:
- ``speed_minutes``: the latest count of each (ad_id, window_start_ms) from
  the speed layer, with the latest count that was marked final.
- ``speed_offsets``: the next Kafka offset to read per topic partition,
  written in the same transaction as the rows read up to it.
- ``late_clicks`` and ``late_counts``: the landed copy of the ``clicks-late``
  and ``late-click-counts`` topics.
- ``batch_runs``: a copy of the batch layer's Delta table of the same name.
- ``batch_minutes``, ``batch_hourly`` and ``batch_daily``: gold minute rows
  of closed days and their sums per local hour and per day, all from the run
  named in ``closed_days`` and written in one transaction.
- ``closed_days``: billing days served from batch.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from shared_logic.bucket_sql import billing_day_sql, bucket_params, hour_start_sql
from shared_logic.timestamps import now_ms

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS speed_minutes (
    ad_id VARCHAR NOT NULL,
    window_start_ms BIGINT NOT NULL,
    window_end_ms BIGINT NOT NULL,
    billing_day DATE NOT NULL,
    hour_start_ms BIGINT NOT NULL,
    clicks BIGINT NOT NULL,
    is_final BOOLEAN NOT NULL,
    final_clicks BIGINT,
    computed_at_ms BIGINT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL,
    PRIMARY KEY (ad_id, window_start_ms)
);
CREATE TABLE IF NOT EXISTS speed_offsets (
    topic VARCHAR NOT NULL,
    kafka_partition INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, kafka_partition)
);
CREATE TABLE IF NOT EXISTS late_clicks (
    click_id VARCHAR NOT NULL,
    ad_id VARCHAR NOT NULL,
    event_time_ms BIGINT NOT NULL,
    billing_day DATE NOT NULL,
    lateness_ms BIGINT,
    watermark_ms BIGINT,
    kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL,
    PRIMARY KEY (kafka_partition, kafka_offset)
);
CREATE TABLE IF NOT EXISTS late_counts (
    ad_id VARCHAR NOT NULL,
    window_start_ms BIGINT NOT NULL,
    window_end_ms BIGINT NOT NULL,
    billing_day DATE NOT NULL,
    late_clicks BIGINT NOT NULL,
    computed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (ad_id, window_start_ms)
);
CREATE TABLE IF NOT EXISTS batch_runs (
    run_id VARCHAR PRIMARY KEY,
    billing_day DATE NOT NULL,
    status VARCHAR NOT NULL,
    started_at_ms BIGINT,
    ended_at_ms BIGINT,
    input_rows BIGINT,
    max_ingest_time_ms BIGINT,
    kafka_offsets VARCHAR,
    billable_clicks BIGINT,
    duplicates_removed BIGINT,
    non_billable_clicks BIGINT,
    billing_timezone VARCHAR,
    error VARCHAR
);
CREATE TABLE IF NOT EXISTS batch_minutes (
    billing_day DATE NOT NULL,
    ad_id VARCHAR NOT NULL,
    bucket_start_ms BIGINT NOT NULL,
    bucket_end_ms BIGINT NOT NULL,
    hour_start_ms BIGINT NOT NULL,
    clicks BIGINT NOT NULL,
    duplicates_removed BIGINT NOT NULL,
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_hourly (
    billing_day DATE NOT NULL,
    ad_id VARCHAR NOT NULL,
    hour_start_ms BIGINT NOT NULL,
    clicks BIGINT NOT NULL,
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_daily (
    billing_day DATE NOT NULL,
    ad_id VARCHAR NOT NULL,
    clicks BIGINT NOT NULL,
    duplicates_removed BIGINT NOT NULL,
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS closed_days (
    billing_day DATE PRIMARY KEY,
    run_id VARCHAR NOT NULL,
    closed_at_ms BIGINT NOT NULL,
    minute_rows BIGINT NOT NULL,
    billable_clicks BIGINT NOT NULL
);
-- Single-column ART indexes let DuckDB look up one ad's rows instead of
-- scanning: speed minutes arrive in time order, and the hourly and daily
-- sums are far fewer rows than minutes. batch_minutes has none because it is
-- sorted by day and ad, so its zone maps already skip other ads' row groups.
CREATE INDEX IF NOT EXISTS speed_minutes_ad_id ON speed_minutes (ad_id);
CREATE INDEX IF NOT EXISTS batch_hourly_ad_id ON batch_hourly (ad_id);
CREATE INDEX IF NOT EXISTS batch_daily_ad_id ON batch_daily (ad_id);
CREATE TABLE IF NOT EXISTS store_meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
"""

# Later offsets of a key replace earlier ones; final_clicks keeps the latest
# count that the speed layer marked final, even if a non-final one follows.
# staged_counts.final_clicks is that count within the batch, or NULL.
_UPSERT_SPEED_MINUTES = f"""
INSERT INTO speed_minutes
SELECT ad_id, window_start_ms, window_end_ms,
       {billing_day_sql('window_start_ms')}, {hour_start_sql('window_start_ms')},
       clicks, is_final, final_clicks, computed_at_ms, kafka_partition, kafka_offset
FROM staged_counts
ON CONFLICT (ad_id, window_start_ms) DO UPDATE SET
    window_end_ms = excluded.window_end_ms,
    clicks = excluded.clicks,
    is_final = excluded.is_final,
    final_clicks = coalesce(excluded.final_clicks, speed_minutes.final_clicks),
    computed_at_ms = excluded.computed_at_ms,
    kafka_partition = excluded.kafka_partition,
    kafka_offset = excluded.kafka_offset
"""

_UPSERT_LATE_COUNTS = f"""
INSERT INTO late_counts
SELECT ad_id, window_start_ms, window_end_ms, {billing_day_sql('window_start_ms')}, late_clicks, computed_at_ms
FROM staged_late_counts
ON CONFLICT (ad_id, window_start_ms) DO UPDATE SET
    late_clicks = excluded.late_clicks, computed_at_ms = excluded.computed_at_ms
"""

_INSERT_LATE_CLICKS = f"""
INSERT OR IGNORE INTO late_clicks
SELECT click_id, ad_id, event_time_ms, {billing_day_sql('event_time_ms')}, lateness_ms, watermark_ms,
       kafka_partition, kafka_offset
FROM staged_late_clicks
"""

_INSERT_BATCH_MINUTES = f"""
INSERT INTO batch_minutes
SELECT billing_day, ad_id, bucket_start_ms, bucket_end_ms, {hour_start_sql('bucket_start_ms')},
       clicks, duplicates_removed, run_id
FROM staged_gold_minutes
WHERE run_id = $run_id
ORDER BY ad_id, bucket_start_ms
"""

SPEED_COUNT_FIELDS = ("ad_id", "window_start_ms", "window_end_ms", "clicks", "is_final", "final_clicks",
                      "computed_at_ms", "kafka_partition", "kafka_offset")
LATE_COUNT_FIELDS = ("ad_id", "window_start_ms", "window_end_ms", "late_clicks", "computed_at_ms")
LATE_CLICK_FIELDS = ("click_id", "ad_id", "event_time_ms", "lateness_ms", "watermark_ms",
                     "kafka_partition", "kafka_offset")


class StoreError(RuntimeError):
    """The database file belongs to another billing time zone or cannot be used."""


class ServingStore:
    """The DuckDB database file of the serving layer and the writes that keep it consistent."""

    def __init__(self, path: Path | str, billing_timezone: str):
        self.path = Path(path)
        self.billing_timezone = billing_timezone
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = duckdb.connect(str(path))
        self._closed = False
        self._lock = threading.Lock()
        self._connection.execute(SCHEMA)
        self._check_zone()
        logger.info("serving store opened at %s (billing time zone %s)", self.path, billing_timezone)

    def _check_zone(self) -> None:
        # Stored billing days and hour starts were computed in one zone; mixing
        # zones in one file would silently misbucket, so refuse to open it.
        row = self._connection.execute("SELECT value FROM store_meta WHERE key = 'billing_timezone'").fetchone()
        if row is None:
            self._connection.execute("INSERT INTO store_meta VALUES ('billing_timezone', ?)",
                                     [self.billing_timezone])
        elif row[0] != self.billing_timezone:
            raise StoreError(
                f"{self.path} was built with billing time zone {row[0]!r}, not {self.billing_timezone!r}; "
                "delete the file to rebuild it from Kafka and Delta, or set ADCLICK_BILLING_TIMEZONE back")

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """Return a new cursor; use one per thread."""
        with self._lock:
            return self._connection.cursor()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield a cursor inside one read transaction, so every statement sees one snapshot."""
        cursor = self.cursor()
        try:
            cursor.execute("BEGIN TRANSACTION")
            yield cursor
            cursor.execute("COMMIT")
        finally:
            cursor.close()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield a cursor inside one write transaction; roll back on any error."""
        cursor = self.cursor()
        try:
            cursor.execute("BEGIN TRANSACTION")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
        finally:
            cursor.close()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._connection.close()
                self._closed = True
                logger.info("serving store at %s closed", self.path)

    # Speed layer.

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        with self.read() as cursor:
            rows = cursor.execute("SELECT topic, kafka_partition, next_offset FROM speed_offsets").fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def apply_speed_batch(self, counts: list[dict], late_counts: list[dict], late_clicks: list[dict],
                          next_offsets: dict[tuple[str, int], int]) -> None:
        """Upsert one poll's records and the offsets after them in one transaction.

        Each list contains records in offset order; for a repeated key the last
        record wins, as in the compacted topic.
        """
        counts = _fold_counts(counts)
        late_counts = list({(r["ad_id"], r["window_start_ms"]): r for r in late_counts}.values())
        params = bucket_params(self.billing_timezone)
        with self.write() as cursor:
            if counts:
                cursor.register("staged_counts", _arrow_rows(counts, SPEED_COUNT_FIELDS))
                cursor.execute(_UPSERT_SPEED_MINUTES, params)
            if late_counts:
                cursor.register("staged_late_counts", _arrow_rows(late_counts, LATE_COUNT_FIELDS))
                cursor.execute(_UPSERT_LATE_COUNTS, params)
            if late_clicks:
                cursor.register("staged_late_clicks", _arrow_rows(late_clicks, LATE_CLICK_FIELDS))
                cursor.execute(_INSERT_LATE_CLICKS, params)
            for (topic, partition), offset in next_offsets.items():
                cursor.execute(
                    "INSERT INTO speed_offsets VALUES (?, ?, ?) "
                    "ON CONFLICT (topic, kafka_partition) DO UPDATE SET next_offset = excluded.next_offset",
                    [topic, partition, offset])

    # Batch layer.

    def replace_batch_runs(self, runs: pa.Table) -> None:
        """Replace the copy of ``batch_runs`` with the rows of one Delta table version."""
        with self.write() as cursor:
            cursor.register("staged_runs", runs)
            cursor.execute("DELETE FROM batch_runs")
            cursor.execute("""
                INSERT INTO batch_runs
                SELECT run_id, billing_day, status, started_at_ms, ended_at_ms, input_rows, max_ingest_time_ms,
                       kafka_offsets, billable_clicks, duplicates_removed, non_billable_clicks,
                       billing_timezone, error
                FROM staged_runs
            """)

    def close_day(self, day: date, run_id: str, gold_minutes: pa.Table) -> int:
        """Serve ``day`` from batch run ``run_id``: replace its rows and mark it closed in one transaction.

        ``gold_minutes`` may contain rows of other runs; only ``run_id``'s are
        loaded. Return the number of minute rows loaded.
        """
        params = {**bucket_params(self.billing_timezone), "run_id": run_id}
        with self.write() as cursor:
            cursor.register("staged_gold_minutes", gold_minutes)
            _delete_batch_rows(cursor, day)
            cursor.execute(_INSERT_BATCH_MINUTES, params)
            cursor.execute("""
                INSERT INTO batch_hourly
                SELECT billing_day, ad_id, hour_start_ms, sum(clicks), any_value(run_id)
                FROM batch_minutes WHERE billing_day = ? GROUP BY ALL ORDER BY ad_id, hour_start_ms
            """, [day])
            cursor.execute("""
                INSERT INTO batch_daily
                SELECT billing_day, ad_id, sum(clicks), sum(duplicates_removed), any_value(run_id)
                FROM batch_minutes WHERE billing_day = ? GROUP BY billing_day, ad_id ORDER BY ad_id
            """, [day])
            rows, clicks = cursor.execute(
                "SELECT count(*), coalesce(sum(clicks), 0) FROM batch_minutes WHERE billing_day = ?", [day]
            ).fetchone()
            cursor.execute("""
                INSERT INTO closed_days VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (billing_day) DO UPDATE SET run_id = excluded.run_id,
                    closed_at_ms = excluded.closed_at_ms, minute_rows = excluded.minute_rows,
                    billable_clicks = excluded.billable_clicks
            """, [day, run_id, now_ms(), rows, clicks])
        return rows

    def reopen_day(self, day: date) -> None:
        """Serve ``day`` from the speed layer again, in one transaction."""
        with self.write() as cursor:
            _delete_batch_rows(cursor, day)
            cursor.execute("DELETE FROM closed_days WHERE billing_day = ?", [day])

    def closed_runs(self) -> dict[date, str]:
        with self.read() as cursor:
            return dict(cursor.execute("SELECT billing_day, run_id FROM closed_days").fetchall())


def _delete_batch_rows(cursor: duckdb.DuckDBPyConnection, day: date) -> None:
    for table in ("batch_minutes", "batch_hourly", "batch_daily"):
        cursor.execute(f"DELETE FROM {table} WHERE billing_day = ?", [day])


def _fold_counts(counts: list[dict]) -> list[dict]:
    """Keep the last record of each window, with the last count marked final before or at it."""
    folded: dict[tuple[str, int], dict] = {}
    for record in counts:
        key = (record["ad_id"], record["window_start_ms"])
        previous_final = folded[key]["final_clicks"] if key in folded else None
        final_clicks = record["clicks"] if record["is_final"] else previous_final
        folded[key] = {**record, "final_clicks": final_clicks}
    return list(folded.values())


def _arrow_rows(rows: list[dict], names: tuple[str, ...]) -> pa.Table:
    return pa.table({name: [row.get(name) for row in rows] for name in names})
