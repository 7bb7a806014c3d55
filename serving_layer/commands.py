"""``adclick serve`` and ``adclick report reconcile``."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date

import duckdb
import requests

from shared_logic.settings import Settings

logger = logging.getLogger(__name__)

EXIT_FLAGGED = 1
EXIT_FAILED = 2


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
    reconcile.set_defaults(handler=_reconcile)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from serving_layer.app import run

    if args.port:
        settings = settings.replace(serving_port=args.port)
    run(settings)
    return 0


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from serving_layer.reconcile import ReportError, write_report

    try:
        report = _report_from_api(settings, args.day)
        if report is None:
            report = _report_from_file(settings, args.day)
    except (ReportError, duckdb.Error, requests.RequestException) as exc:
        print(f"adclick report reconcile: {exc}", file=sys.stderr)
        return EXIT_FAILED
    csv_path, html_path = write_report(report, settings.reports_dir)
    totals = report["totals"]
    print(f"day {report['billing_day']}: {totals['ads']} ads, speed {totals['speed_final_clicks']}, "
          f"batch {totals['batch_clicks']}, unexplained {totals['unexplained']}, "
          f"{totals['flagged_rows']} flagged\n{csv_path}\n{html_path}")
    return EXIT_FLAGGED if totals["flagged_rows"] else 0


def _report_from_api(settings: Settings, day: date) -> dict | None:
    """Request the report from a running ``adclick serve``; return None when none responds."""
    url = f"http://{settings.serving_host}:{settings.serving_port}/v1/reconciliation"
    try:
        response = requests.get(url, params={"day": day.isoformat()}, timeout=60)
    except requests.ConnectionError:
        logger.info("no serving process responds at %s; reading %s directly", url, settings.serving_duckdb_path)
        return None
    if response.status_code == 409:
        from serving_layer.reconcile import ReportError

        raise ReportError(response.json()["message"])
    response.raise_for_status()
    return response.json()


def _report_from_file(settings: Settings, day: date) -> dict:
    """Build the report from the DuckDB file as the serving process last left it."""
    from serving_layer.reconcile import reconcile_day
    from serving_layer.store import ServingStore

    store = ServingStore(settings.serving_duckdb_path, settings.billing_timezone)
    try:
        return reconcile_day(store, settings, day)
    finally:
        store.close()
