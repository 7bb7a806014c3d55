"""Reads of the batch layer's Delta tables that the DAG tasks need.

Tasks call these at run time with the ``deltalake`` package, so no Spark
session is started for a check. Nothing here runs at parse time.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from shared_logic.settings import Settings
from shared_logic.time_buckets import day_bounds_ms

logger = logging.getLogger(__name__)

RAW_CLICKS = "raw_clicks"
BATCH_RUNS = "batch_runs"
GOLD_DAILY = "billing_clicks_daily"


class BillingCheckError(ValueError):
    """A billing day whose batch results fail a consistency check."""


def landing_progress_path(settings: Settings) -> Path:
    return settings.path("landing", "progress.json")


def record_landing_progress(settings: Settings, landed_through_ms: int) -> int:
    """Store that every click ingested before ``landed_through_ms`` is in bronze.

    The stored value only moves forward, so a slow older landing run cannot
    move it back. Returns the stored value.
    """
    path = landing_progress_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = max(landed_through_ms, _read_progress_marker(path) or 0)
    # Write a temporary file and rename it, so a reader never sees half a file.
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump({"landed_through_ms": stored}, handle)
    os.replace(handle.name, path)
    return stored


def _read_progress_marker(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["landed_through_ms"])
    except FileNotFoundError:
        return None


def _open_table(settings: Settings, name: str) -> DeltaTable | None:
    try:
        return DeltaTable(str(settings.path("delta", name)))
    except TableNotFoundError:
        return None


def bronze_max_ingest_time_ms(settings: Settings) -> int | None:
    """Return the largest ``ingest_time_ms`` in bronze from the Delta file statistics."""
    table = _open_table(settings, RAW_CLICKS)
    if table is None:
        return None
    actions = pa.table(table.get_add_actions(flatten=True))
    column = "max.ingest_time_ms"
    if actions.num_rows == 0 or column not in actions.column_names:
        return None
    maximum = pc.max(actions[column]).as_py()
    return None if maximum is None else int(maximum)


def landed_through_ms(settings: Settings) -> int | None:
    """Return the time up to which landing has caught up, or None if nothing landed.

    It is the later of the landing DAG's progress marker (the start of its last
    successful run, which read Kafka to its end) and the newest ingest time in
    bronze.
    """
    candidates = [
        value for value in (_read_progress_marker(landing_progress_path(settings)),
                            bronze_max_ingest_time_ms(settings))
        if value is not None
    ]
    return max(candidates) if candidates else None


@dataclass(frozen=True)
class DayResults:
    billing_day: str
    run_id: str
    gold_rows: int
    gold_clicks: int
    accepted_clicks: int
    billable_clicks: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_day_results(settings: Settings, day: date) -> DayResults:
    """Check the batch results of one billing day, raising BillingCheckError on failure.

    Checks: the day's latest ``batch_runs`` row succeeded; gold rows lie inside
    the day and have non-negative counts; gold clicks equal the run's
    ``billable_clicks``; and gold clicks are not above the accepted clicks of
    the day in bronze.
    """
    start_ms, end_ms = day_bounds_ms(day, settings.billing_zone)
    run = _latest_batch_run(settings, day)
    gold = _gold_rows(settings, start_ms, end_ms)
    accepted = _bronze_rows_between(settings, start_ms, end_ms)

    problems = []
    if run["status"] != "succeeded":
        problems.append(f"latest batch_runs row {run['run_id']} has status {run['status']!r}")
    clicks = gold["clicks"].to_pylist()
    duplicates = gold["duplicates_removed"].to_pylist()
    if any(value is None or value < 0 for value in clicks):
        problems.append("gold has a negative or null clicks value")
    if any(value is None or value < 0 for value in duplicates):
        problems.append("gold has a negative or null duplicates_removed value")
    gold_clicks = sum(value or 0 for value in clicks)
    billable = int(run["billable_clicks"] or 0)
    if gold_clicks != billable:
        problems.append(f"gold clicks {gold_clicks} differ from batch_runs billable_clicks {billable}")
    if gold_clicks > accepted:
        problems.append(f"gold clicks {gold_clicks} are above the {accepted} accepted clicks in bronze")
    if problems:
        raise BillingCheckError(f"billing day {day}: " + "; ".join(problems))
    return DayResults(day.isoformat(), str(run["run_id"]), gold.num_rows, gold_clicks, accepted, billable)


def _latest_batch_run(settings: Settings, day: date) -> dict[str, Any]:
    table = _open_table(settings, BATCH_RUNS)
    if table is None:
        raise BillingCheckError(f"billing day {day}: the batch_runs table does not exist")
    rows = [row for row in table.to_pyarrow_table().to_pylist()
            if str(row["billing_day"]) == day.isoformat()]
    if not rows:
        raise BillingCheckError(f"billing day {day}: batch_runs has no row for the day")
    return max(rows, key=lambda row: row["started_at_ms"] or 0)


def _gold_rows(settings: Settings, start_ms: int, end_ms: int) -> pa.Table:
    table = _open_table(settings, GOLD_DAILY)
    if table is None:
        raise BillingCheckError(f"the gold table {GOLD_DAILY} does not exist")
    dataset = table.to_pyarrow_dataset()
    in_day = (ds.field("bucket_start_ms") >= start_ms) & (ds.field("bucket_start_ms") < end_ms)
    return dataset.to_table(columns=["clicks", "duplicates_removed"], filter=in_day)


def _bronze_rows_between(settings: Settings, start_ms: int, end_ms: int) -> int:
    table = _open_table(settings, RAW_CLICKS)
    if table is None:
        return 0
    dataset = table.to_pyarrow_dataset()
    in_day = (ds.field("event_time_ms") >= start_ms) & (ds.field("event_time_ms") < end_ms)
    return dataset.count_rows(filter=in_day)
