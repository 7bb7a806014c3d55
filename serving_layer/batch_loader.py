"""Load the batch layer's Delta tables into the serving store.

A billing day is closed, and served from batch, when its latest finished
run (``succeeded`` or ``failed``, by ``started_at_ms`` and then ``run_id``)
succeeded. A run still ``running`` changes nothing, so a recompute in
progress keeps the day on its previous run. A day whose latest finished run
failed is served from the speed layer again.

Before closing a day the loader checks the gold rows against the run: the
minute clicks of the run must add up to ``batch_runs.billable_clicks``, and
the gold hourly and daily rows must equal the sums of its minutes. A day
that fails a check stays as it was and is checked again on the next poll,
because the gold tables may not yet show the run's commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from serving_layer.store import ServingStore
from shared_logic.settings import Settings
from shared_logic.time_buckets import day_bounds_ms

logger = logging.getLogger(__name__)

RUNS_TABLE = "batch_runs"
GOLD_MINUTE_TABLE = "billing_clicks_minute"
GOLD_HOURLY_TABLE = "billing_clicks_hourly"
GOLD_DAILY_TABLE = "billing_clicks_daily"


@dataclass(frozen=True)
class DayDecision:
    billing_day: date
    run_id: str
    status: str
    billable_clicks: int


class BatchLoader:
    """Polls ``batch_runs`` and closes, reloads or reopens days in the store."""

    def __init__(self, settings: Settings, store: ServingStore):
        self.settings = settings
        self.store = store
        self.runs_version: int | None = None
        self._warned_runs: set[str] = set()

    def _table_path(self, name: str) -> Path:
        return self.settings.path("delta", name)

    def poll(self) -> int:
        """Load what changed since the last poll; return the number of days closed, reloaded or reopened."""
        runs_path = self._table_path(RUNS_TABLE)
        if not DeltaTable.is_deltatable(str(runs_path)):
            return 0
        table = DeltaTable(runs_path)
        version = table.version()
        if version != self.runs_version:
            runs = table.to_pyarrow_table()
            self.store.replace_batch_runs(runs)
            logger.info("loaded %d batch runs from %s version %d", runs.num_rows, runs_path, version)
            self.runs_version = version
        return self._apply_decisions()

    def decisions(self) -> list[DayDecision]:
        """Return the latest finished run of every billing day, among runs in the serving billing time zone."""
        with self.store.read() as cursor:
            rows = cursor.execute("""
                SELECT billing_day, run_id, status, coalesce(billable_clicks, 0)
                FROM batch_runs
                WHERE status IN ('succeeded', 'failed') AND billing_timezone = ?
                QUALIFY row_number() OVER (PARTITION BY billing_day ORDER BY started_at_ms DESC, run_id DESC) = 1
                ORDER BY billing_day
            """, [self.settings.billing_timezone]).fetchall()
        return [DayDecision(*row) for row in rows]

    def _apply_decisions(self) -> int:
        closed = self.store.closed_runs()
        changed = 0
        for decision in self.decisions():
            day = decision.billing_day
            if decision.status == "failed":
                if day in closed:
                    logger.warning("day %s: latest batch run %s failed, serving the speed layer again",
                                   day, decision.run_id)
                    self.store.reopen_day(day)
                    changed += 1
                continue
            if closed.get(day) == decision.run_id:
                continue
            if self._close(decision, reload=day in closed):
                changed += 1
        return changed

    def _close(self, decision: DayDecision, reload: bool) -> bool:
        day, run_id = decision.billing_day, decision.run_id
        minutes = self._read_gold(GOLD_MINUTE_TABLE, day)
        problem = self._check_gold(decision, minutes)
        if problem:
            if run_id not in self._warned_runs:
                logger.warning("day %s: not loading batch run %s yet: %s", day, run_id, problem)
                self._warned_runs.add(run_id)
            return False
        rows = self.store.close_day(day, run_id, minutes)
        logger.info("day %s %s from batch run %s: %d minute rows, %d billable clicks",
                    day, "reloaded" if reload else "closed", run_id, rows, decision.billable_clicks)
        return True

    def _read_gold(self, name: str, day: date) -> pa.Table | None:
        path = self._table_path(name)
        if not DeltaTable.is_deltatable(str(path)):
            return None
        return DeltaTable(path).to_pyarrow_table(filters=[("billing_day", "=", day)])

    def _check_gold(self, decision: DayDecision, minutes: pa.Table | None) -> str | None:
        """Return why the run's gold rows cannot be served, or None when they add up."""
        if minutes is None:
            return f"table {GOLD_MINUTE_TABLE} does not exist"
        run_minutes = minutes.filter(pc.equal(minutes["run_id"], decision.run_id))
        minute_total = _total(run_minutes)
        if minute_total != decision.billable_clicks:
            return (f"its minute rows add up to {minute_total} clicks but batch_runs.billable_clicks "
                    f"is {decision.billable_clicks}")
        start_ms, end_ms = day_bounds_ms(decision.billing_day, self.settings.billing_zone)
        starts = run_minutes["bucket_start_ms"]
        if run_minutes.num_rows and (pc.min(starts).as_py() < start_ms or pc.max(starts).as_py() >= end_ms):
            return (f"minute rows fall outside the day [{start_ms}, {end_ms}) in "
                    f"{self.settings.billing_timezone}; is the batch layer using another billing time zone?")
        for name in (GOLD_HOURLY_TABLE, GOLD_DAILY_TABLE):
            rolled = self._read_gold(name, decision.billing_day)
            if rolled is None:
                continue
            rolled_total = _total(rolled.filter(pc.equal(rolled["run_id"], decision.run_id)))
            if rolled_total != minute_total:
                return f"{name} adds up to {rolled_total} clicks but its minutes to {minute_total}"
        return None


def _total(table: pa.Table) -> int:
    return int(pc.sum(table["clicks"]).as_py() or 0)
