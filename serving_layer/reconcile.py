"""Billing reconciliation: the speed layer's final counts against the batch counts of one day.

For each ad, ``difference = speed_final - batch``. The known reasons are
taken off in this order, and what is left is the unexplained remainder:

1. Late clicks: clicks the speed layer routed to ``clicks-late`` never reach
   its counts but are billed by batch, so they explain ``-late_clicks``.
2. Clicks after close: clicks of the day whose ``ingest_time_ms`` is after
   the closing run's ``max_ingest_time_ms`` (read from the bronze table,
   less those in ``clicks-late``) can be counted by the speed layer but not
   by that run, so they explain ``+after_close_clicks``.
3. Duplicates and non-billable clicks: batch removed them, and the speed
   layer may have counted them (a duplicate outside its deduplication TTL,
   or a rule only batch applies). They explain a positive remainder up to
   their number; more than that stays unexplained.

A row is flagged when its unexplained remainder is over both the click
threshold and the percentage threshold of the settings.
"""

from __future__ import annotations

import csv
import html
import io
import logging
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import pyarrow.compute as pc
from deltalake import DeltaTable

from serving_layer.store import ServingStore
from shared_logic.settings import Settings
from shared_logic.time_buckets import day_bounds_ms
from shared_logic.timestamps import now_ms

logger = logging.getLogger(__name__)

SILVER_TABLE = "clicks_deduped"
BRONZE_TABLE = "raw_clicks"


class ReportError(RuntimeError):
    """The day cannot be reconciled yet, for example because no batch run closed it."""


@dataclass
class ReconciliationRow:
    ad_id: str
    speed_final_clicks: int
    speed_provisional_minutes: int
    batch_clicks: int
    difference: int
    difference_pct: float | None
    late_clicks: int
    after_close_clicks: int
    duplicates_removed: int
    duplicates_explained: int
    non_billable_clicks: int
    non_billable_explained: int
    unexplained: int
    unexplained_pct: float | None
    flagged: bool


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 4) if whole else None


def _clamp(value: int, upper: int) -> int:
    return max(0, min(value, upper))


def explain_row(ad_id: str, speed: int, provisional_minutes: int, batch: int, late: int, after_close: int,
                duplicates: int, non_billable: int, settings: Settings) -> ReconciliationRow:
    """Split one ad's difference into its known reasons and the unexplained remainder."""
    difference = speed - batch
    remainder = difference + late - after_close
    duplicates_explained = _clamp(remainder, duplicates)
    remainder -= duplicates_explained
    non_billable_explained = _clamp(remainder, non_billable)
    remainder -= non_billable_explained
    unexplained_pct = _pct(remainder, batch)
    over_clicks = abs(remainder) > settings.reconciliation_threshold_clicks
    # With no batch clicks there is no percentage, so only the click threshold applies.
    over_pct = unexplained_pct is None or abs(unexplained_pct) > settings.reconciliation_threshold_pct
    return ReconciliationRow(
        ad_id=ad_id, speed_final_clicks=speed, speed_provisional_minutes=provisional_minutes,
        batch_clicks=batch, difference=difference, difference_pct=_pct(difference, batch),
        late_clicks=late, after_close_clicks=after_close, duplicates_removed=duplicates,
        duplicates_explained=duplicates_explained, non_billable_clicks=non_billable,
        non_billable_explained=non_billable_explained, unexplained=remainder, unexplained_pct=unexplained_pct,
        flagged=remainder != 0 and over_clicks and over_pct,
    )


def reconcile_day(store: ServingStore, settings: Settings, day: date) -> dict:
    """Build the reconciliation report of one closed billing day."""
    with store.read() as cursor:
        closed = cursor.execute("""
            SELECT c.run_id, r.max_ingest_time_ms FROM closed_days c LEFT JOIN batch_runs r USING (run_id)
            WHERE c.billing_day = ?
        """, [day]).fetchone()
        if closed is None:
            raise ReportError(f"day {day} has no successful batch run loaded yet, so there is no batch count "
                              "to reconcile; run `adclick recompute` for it or wait for the batch layer")
        run_id, max_ingest_time_ms = closed
        speed = {ad: (clicks, provisional) for ad, clicks, provisional in cursor.execute("""
            SELECT ad_id, sum(coalesce(final_clicks, clicks))::BIGINT, count(*) FILTER (WHERE final_clicks IS NULL)
            FROM speed_minutes WHERE billing_day = ? GROUP BY ad_id
        """, [day]).fetchall()}
        batch = {ad: (clicks, duplicates) for ad, clicks, duplicates in cursor.execute(
            "SELECT ad_id, clicks, duplicates_removed FROM batch_daily WHERE billing_day = ?", [day]).fetchall()}
        late_ids = cursor.execute(
            "SELECT DISTINCT ad_id, click_id FROM late_clicks WHERE billing_day = ?", [day]).fetchall()
    late: dict[str, int] = {}
    for ad, _click_id in late_ids:
        late[ad] = late.get(ad, 0) + 1
    non_billable = _non_billable_by_ad(settings, day)
    after_close = _after_close_by_ad(settings, day, max_ingest_time_ms, {click for _ad, click in late_ids})

    rows = []
    for ad in sorted(set(speed) | set(batch) | set(late) | set(after_close)):
        speed_clicks, provisional = speed.get(ad, (0, 0))
        batch_clicks, duplicates = batch.get(ad, (0, 0))
        rows.append(explain_row(ad, speed_clicks, provisional, batch_clicks, late.get(ad, 0),
                                after_close.get(ad, 0), duplicates, non_billable.get(ad, 0), settings))
    report = _summarise(settings, day, run_id, rows)
    logger.info("reconciled day %s against batch run %s: %d ads, %d flagged, %d unexplained clicks",
                day, run_id, len(rows), report["totals"]["flagged_rows"], report["totals"]["unexplained"])
    return report


def _summarise(settings: Settings, day: date, run_id: str, rows: list[ReconciliationRow]) -> dict:
    totals = {name: sum(getattr(row, name) for row in rows) for name in (
        "speed_final_clicks", "speed_provisional_minutes", "batch_clicks", "difference", "late_clicks",
        "after_close_clicks", "duplicates_removed", "duplicates_explained", "non_billable_clicks",
        "non_billable_explained", "unexplained")}
    totals["difference_pct"] = _pct(totals["difference"], totals["batch_clicks"])
    totals["ads"] = len(rows)
    totals["flagged_rows"] = sum(row.flagged for row in rows)
    return {
        "billing_day": day.isoformat(),
        "run_id": run_id,
        "billing_timezone": settings.billing_timezone,
        "generated_at_ms": now_ms(),
        "threshold_clicks": settings.reconciliation_threshold_clicks,
        "threshold_pct": settings.reconciliation_threshold_pct,
        "totals": totals,
        "rows": [asdict(row) for row in rows],
    }


def _read_delta_day(settings: Settings, name: str, day: date, columns: list[str], filters: list):
    path = settings.path("delta", name)
    if not DeltaTable.is_deltatable(str(path)):
        logger.warning("table %s does not exist; the report of day %s counts none of its clicks", path, day)
        return None
    return DeltaTable(path).to_pyarrow_table(columns=columns, filters=filters)


def _count_by_ad(ad_ids) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ad in ad_ids:
        counts[ad] = counts.get(ad, 0) + 1
    return counts


def _non_billable_by_ad(settings: Settings, day: date) -> dict[str, int]:
    table = _read_delta_day(settings, SILVER_TABLE, day, ["ad_id", "non_billable_reason"],
                            [("billing_day", "=", day)])
    if table is None:
        return {}
    table = table.filter(pc.is_valid(table["non_billable_reason"]))
    return _count_by_ad(table["ad_id"].to_pylist())


def _after_close_by_ad(settings: Settings, day: date, max_ingest_time_ms: int | None,
                       late_click_ids: set[str]) -> dict[str, int]:
    if max_ingest_time_ms is None:
        return {}
    start_ms, end_ms = day_bounds_ms(day, settings.billing_zone)
    table = _read_delta_day(settings, BRONZE_TABLE, day, ["click_id", "ad_id", "ingest_time_ms"], [
        ("event_time_ms", ">=", start_ms), ("event_time_ms", "<", end_ms),
        ("ingest_time_ms", ">", max_ingest_time_ms)])
    if table is None:
        return {}
    first_copy = {}
    for click_id, ad in zip(table["click_id"].to_pylist(), table["ad_id"].to_pylist()):
        if click_id not in late_click_ids:
            first_copy.setdefault(click_id, ad)
    return _count_by_ad(first_copy.values())


# Output files.

CSV_COLUMNS = list(ReconciliationRow.__dataclass_fields__)


def render_csv(report: dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(report["rows"])
    return buffer.getvalue()


def render_html(report: dict) -> str:
    """Render the report as one HTML page: totals first, then every ad with flagged rows highlighted."""
    totals = report["totals"]
    title = f"Billing reconciliation {report['billing_day']}"
    total_rows = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>"
                         for name, value in totals.items())
    header = "".join(f"<th>{html.escape(name)}</th>" for name in CSV_COLUMNS)
    body = []
    for row in sorted(report["rows"], key=lambda r: (not r["flagged"], r["ad_id"])):
        cells = "".join(f"<td>{html.escape(str(row[name]))}</td>" for name in CSV_COLUMNS)
        body.append(f"<tr class=\"{'flagged' if row['flagged'] else 'ok'}\">{cells}</tr>")
    verdict = (f"{totals['flagged_rows']} ads have an unexplained difference over the threshold"
               if totals["flagged_rows"] else "every difference is explained within the threshold")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }}
tr.flagged td {{ background: #fdd; font-weight: bold; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Batch run {html.escape(str(report['run_id']))}, billing time zone {html.escape(report['billing_timezone'])};
threshold {report['threshold_clicks']} clicks and {report['threshold_pct']} %. Result: {html.escape(verdict)}.</p>
<h2>Totals</h2>
<table>{total_rows}</table>
<h2>Ads (flagged first)</h2>
<table><tr>{header}</tr>
{''.join(body)}
</table></body></html>
"""


def write_report(report: dict, reports_dir: Path) -> tuple[Path, Path]:
    """Write the CSV and HTML files of a report and return their paths."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"reconciliation-{report['billing_day']}"
    csv_path = reports_dir / f"{stem}.csv"
    html_path = reports_dir / f"{stem}.html"
    csv_path.write_text(render_csv(report))
    html_path.write_text(render_html(report))
    logger.info("wrote reconciliation report of day %s to %s and %s", report["billing_day"], csv_path, html_path)
    return csv_path, html_path
