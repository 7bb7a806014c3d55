"""``adclick serve`` and ``adclick report reconcile``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import date

import duckdb
import requests
from kafka.errors import KafkaError

from shared_logic.settings import Settings

logger = logging.getLogger(__name__)

EXIT_FLAGGED = 1
EXIT_FAILED = 2
# Bound of the catch-up pass that reads Kafka when no `adclick serve` runs.
CATCH_UP_TIMEOUT_S = 120.0


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="serve the query API and keep the DuckDB store in step with Kafka and Delta",
        description="Own the serving DuckDB file, consume the speed layer's topics, load closed days "
                    "from the batch layer's Delta tables and serve the query API on serving_host:serving_port.")
    serve.add_argument("--port", type=int, help="port to listen on (default: serving_port, 8000)")
    serve.set_defaults(handler=_serve)

    report = subparsers.add_parser("report", help="write billing reports")
    kinds = report.add_subparsers(dest="report", required=True, metavar="REPORT")
    reconcile = kinds.add_parser(
        "reconcile", help="reconcile the speed layer's final counts with batch for one billing day",
        description="Write reconciliation-DAY.csv and .html to the reports folder. Exit code 0: every "
                    "difference is explained; 1: some ads are flagged; 2: the report could not be built.")
    reconcile.add_argument("--day", required=True, type=date.fromisoformat,
                           help="billing day in the billing time zone, YYYY-MM-DD")
    reconcile.add_argument("--batch-run-id",
                           help="reconcile against this batch run of the day (a batch_runs run_id); "
                                "by default, against the run that closed the day")
    reconcile.add_argument("--wait-for-batch-s", type=float, default=0.0,
                           help="seconds to wait for a running `adclick serve` to load the day's batch run "
                                "before giving up (default: 0, no wait)")
    reconcile.set_defaults(handler=_reconcile)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from serving_layer.app import run

    if args.port:
        settings = settings.replace(serving_port=args.port)
    run(settings)
    return 0


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from serving_layer.reconcile import write_report

    try:
        report = _report_from_api(settings, args.day, args.batch_run_id, args.wait_for_batch_s)
        if report is None:
            report = _report_from_file(settings, args.day, args.batch_run_id)
    # RuntimeError covers ReportError, StoreError, CatchUpError and a missing topic.
    except (RuntimeError, KafkaError, duckdb.Error, requests.RequestException) as exc:
        print(f"adclick report reconcile: {exc}", file=sys.stderr)
        return EXIT_FAILED
    csv_path, html_path = write_report(report, settings.reports_dir)
    totals = report["totals"]
    print(f"day {report['billing_day']} (batch run {report['run_id']}): {totals['ads']} ads, "
          f"speed {totals['speed_final_clicks']}, batch {totals['batch_clicks']}, "
          f"unexplained {totals['unexplained']}, {totals['flagged_rows']} flagged\n{csv_path}\n{html_path}")
    return EXIT_FLAGGED if totals["flagged_rows"] else 0


def _report_from_api(settings: Settings, day: date, batch_run_id: str | None, wait_s: float) -> dict | None:
    """Request the report from a running ``adclick serve``; return None when none responds.

    While the server has not closed the day with ``batch_run_id`` (or with any
    run, when it is None), the request is repeated every
    ``serving_delta_poll_interval_s`` for up to ``wait_s`` seconds.
    """
    from serving_layer.reconcile import ReportError

    url = f"http://{settings.serving_host}:{settings.serving_port}/v1/reconciliation"
    deadline = time.monotonic() + wait_s
    attempt = 0
    while True:
        try:
            response = requests.get(url, params={"day": day.isoformat()}, timeout=60)
        except requests.ConnectionError:
            logger.info("no serving process responds at %s; reading %s directly", url,
                        settings.serving_duckdb_path)
            return None
        if response.status_code == 409:
            reason = response.json()["message"]
        else:
            response.raise_for_status()
            report = response.json()
            if batch_run_id is None or report["run_id"] == batch_run_id:
                return report
            # NOTE: a newer run that closed the day first also keeps this
            # waiting until the timeout, because the report names only its run.
            reason = f"day {day} is served from batch run {report['run_id']}, not {batch_run_id}"

        attempt += 1
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise ReportError(f"{reason}; `adclick serve` at {url} did not load the batch run within "
                              f"{wait_s:.0f} s (raise --wait-for-batch-s, or check its /healthz)")
        delay_s = min(settings.serving_delta_poll_interval_s, remaining_s)
        logger.info("billing_day=%s batch_run_id=%s: retry %d in %.1f s (%.0f s left): %s",
                    day, batch_run_id, attempt, delay_s, remaining_s, reason)
        time.sleep(delay_s)


def _report_from_file(settings: Settings, day: date, batch_run_id: str | None) -> dict:
    """Bring the DuckDB file up to date with Kafka and Delta, then build the report from it.

    DuckDB lets one process write the file, so this works only while no
    ``adclick serve`` has it open.
    """
    from serving_layer.catch_up import catch_up
    from serving_layer.reconcile import ReportError, reconcile_day
    from serving_layer.store import ServingStore

    store = ServingStore(settings.serving_duckdb_path, settings.billing_timezone)
    try:
        catch_up(settings, store, CATCH_UP_TIMEOUT_S)
        report = reconcile_day(store, settings, day)
    finally:
        store.close()
    if batch_run_id is not None and report["run_id"] != batch_run_id:
        raise ReportError(f"day {day} is closed by batch run {report['run_id']}, not {batch_run_id}; "
                          "either a newer run closed the day or the loader rejected this run's gold rows "
                          "(see the log above)")
    return report
