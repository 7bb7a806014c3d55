"""The demo's steps after its services are up: replay, land, bill, summarise."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import date, datetime, time as clock_time
from pathlib import Path

import requests

from shared_logic.settings import PROJECT_ROOT, Settings
from shared_logic.time_buckets import billing_day
from shared_logic.timestamps import now_ms, parse_timestamp_ms

logger = logging.getLogger(__name__)
BILLING_DAG_ID = "billing_nightly"


def run_demo(settings: Settings, data: Path | None, speedup: float) -> str:
    """Run the demo's steps and return the summary text."""
    traffic = send_traffic(settings, data, speedup)
    land_raw_clicks(settings)
    days = closed_days(traffic, settings)
    for day in days:
        run_billing_dag(settings, day)
    serving = f"http://127.0.0.1:{settings.serving_port}"
    wait_for_serving(serving, days)
    wait_for_speed_layer(serving)
    return summarise(settings, serving, traffic, days)


def _adclick() -> str:
    return str(Path(sys.executable).parent / "adclick")


def send_traffic(settings: Settings, data: Path | None, speedup: float) -> dict:
    """Replay ``data`` (or send synthetic clicks) through the collector; return the summary."""
    collector = f"http://127.0.0.1:{settings.collector_port}"
    summary_file = settings.path("demo", "traffic.json")
    summary_file.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        from traffic.replay import replay

        summary = replay(data, collector, speedup, zone=settings.billing_zone)
        summary_file.write_text(summary.to_json())
        return json.loads(summary.to_json())

    from traffic.generate import TrafficMix, generate

    logger.info("no click log given and the TalkingData sample is missing; sending synthetic clicks")
    truth = generate(TrafficMix(rate_per_s=500, duration_s=60), settings, collector, settings.path("demo", "truth.json"))
    first = min(int(key.split("|")[1]) for key in truth.batch_per_minute)
    last = max(int(key.split("|")[1]) for key in truth.batch_per_minute)
    return {"source": "synthetic", "sent": truth.sent, "accepted": truth.sent - truth.invalid,
            "rejected": truth.invalid, "duplicates": truth.duplicates, "first_event_ms": first, "last_event_ms": last}


def land_raw_clicks(settings: Settings) -> None:
    """Land everything in the clicks topic into the bronze table, once."""
    logger.info("landing raw clicks into the bronze Delta table")
    subprocess.run([_adclick(), "land", "--once"], cwd=PROJECT_ROOT, check=True)


def closed_days(traffic: dict, settings: Settings) -> list[date]:
    """Return the billing days with clicks that ended before today."""
    zone = settings.billing_zone
    first_ms = traffic.get("first_event_ms") or parse_timestamp_ms(traffic["first_event"])
    last_ms = traffic.get("last_event_ms") or parse_timestamp_ms(traffic["last_event"])
    today = billing_day(now_ms(), zone)
    day, last_day = billing_day(first_ms, zone), billing_day(last_ms, zone)
    days = []
    while day <= last_day and day < today:
        days.append(day)
        day = date.fromordinal(day.toordinal() + 1)
    return days


def run_billing_dag(settings: Settings, day: date) -> None:
    """Run the nightly billing DAG for ``day`` through Airflow (``airflow dags test``)."""
    from infra.airflow_local import LocalAirflow

    airflow = LocalAirflow(settings)
    airflow.migrate()
    # A manual run's data interval ends at its logical date, so day D is the
    # run at the following local midnight. The conf also names the day.
    following = date.fromordinal(day.toordinal() + 1)
    logical_date = datetime.combine(following, clock_time(0), tzinfo=settings.billing_zone).isoformat()
    logger.info("running DAG %s for billing day %s (logical date %s)", BILLING_DAG_ID, day, logical_date)
    result = airflow.run_cli("dags", "test", "--conf", json.dumps({"billing_day": day.isoformat()}),
                             BILLING_DAG_ID, logical_date, timeout_s=1800)
    log = settings.path("logs", f"airflow-{BILLING_DAG_ID}-{day}.log")
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"DAG {BILLING_DAG_ID} failed for {day}; see {log}")


def wait_for_serving(serving: str, days: list[date], timeout_s: float = 180.0) -> None:
    """Wait until the serving layer has loaded the batch results of ``days``."""
    deadline = time.monotonic() + timeout_s
    expected = {day.isoformat() for day in days}
    while time.monotonic() < deadline:
        closed = set(requests.get(serving + "/v1/status", timeout=10).json()["boundary"]["closed_days"])
        if expected <= closed:
            return
        time.sleep(2)
    raise TimeoutError(f"the serving layer did not load batch results for {sorted(expected)} in {timeout_s:.0f} s")


def wait_for_speed_layer(serving: str, quiet_s: float = 15.0, timeout_s: float = 300.0) -> None:
    """Wait until the speed layer's counts stop changing for ``quiet_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    last_seen, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        speed = requests.get(serving + "/v1/status", timeout=10).json()["speed"]
        seen = (speed["latest_computed_at_ms"], speed["minute_rows"])
        if seen != last_seen:
            last_seen, stable_since = seen, time.monotonic()
        elif speed["minute_rows"] and time.monotonic() - stable_since >= quiet_s:
            return
        time.sleep(2)
    logger.warning("the speed layer was still changing after %.0f s; the summary shows its latest counts", timeout_s)


def summarise(settings: Settings, serving: str, traffic: dict, days: list[date]) -> str:
    status = requests.get(serving + "/v1/status", timeout=10).json()
    all_days = sorted(set(status["boundary"]["closed_days"]) | set(status["boundary"]["open_days_with_speed_data"]))
    lines = [
        "",
        "adclick demo summary",
        f"  source: {traffic['source']}",
        f"  clicks sent {traffic['sent']}, accepted {traffic['accepted']}, rejected {traffic['rejected']}, "
        f"duplicates {traffic['duplicates']}, late (speed layer) {status['speed']['late_clicks']}",
        "  per billing day (speed final vs batch):",
    ]
    flagged_total = 0
    for day in all_days:
        if day in status["boundary"]["closed_days"]:
            report = requests.get(serving + "/v1/reconciliation", params={"day": day}, timeout=60).json()
            totals = report["totals"]
            flagged_total += totals["flagged_rows"]
            lines.append(f"    {day}: speed {totals['speed_final_clicks']}, batch {totals['batch_clicks']} "
                         f"(authoritative); late {totals['late_clicks']}, duplicates removed "
                         f"{totals['duplicates_removed']}, unexplained {totals['unexplained']}, "
                         f"flagged rows {totals['flagged_rows']}")
        else:
            billing = requests.get(serving + "/v1/billing", params={"start_day": day, "end_day": day},
                                   timeout=30).json()
            lines.append(f"    {day}: speed {billing['total_clicks']} (provisional, day still open)")
    verdict = "every difference explained" if flagged_total == 0 else f"{flagged_total} rows flagged"
    lines += [
        f"  reconciliation: {verdict}; reports in {settings.reports_dir}",
        f"  dashboard: http://127.0.0.1:{settings.dashboard_port}",
        f"  serving API: {serving}/docs",
        "  stop everything with `make down`",
    ]
    return "\n".join(lines)
