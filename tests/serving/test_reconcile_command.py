"""``adclick report reconcile`` with and without a running ``adclick serve``.

With a server, the command waits until the server's batch loader has closed
the day with the requested batch run. Without one, it brings the DuckDB file
up to date from Kafka and Delta itself before it reconciles.
"""

from __future__ import annotations

import csv
import os
import subprocess
from datetime import date

import pytest

from infra.cli import build_parser
from serving_layer.store import ServingStore
from shared_logic.settings import PROJECT_ROOT
from shared_logic.timestamps import parse_timestamp_ms
from tests.conftest import free_port
from tests.processes import ADCLICK, start_adclick, stop, wait_for_http
from tests.serving.helpers import count_record, produce_transaction, write_batch_run

DAY = date(2026, 11, 30)
NOON = parse_timestamp_ms("2026-11-30T17:00:00Z")


def read_report_rows(settings) -> dict[str, dict]:
    with open(settings.reports_dir / f"reconciliation-{DAY}.csv", newline="") as handle:
        return {row["ad_id"]: row for row in csv.DictReader(handle)}


@pytest.fixture
def command_settings(kafka_settings):
    """Settings whose serving port nothing else in the session listens on."""
    return kafka_settings.replace(serving_port=free_port(), serving_delta_poll_interval_s=0.5)


def test_reconcile_without_server_catches_up(command_settings) -> None:
    settings = command_settings
    produce_transaction(settings, settings.topic_click_counts,
                        [count_record("ad-1", NOON, 4), count_record("ad-2", NOON, 3)])
    run_id = write_batch_run(settings, DAY, {("ad-1", NOON): 4, ("ad-2", NOON): 3}, started_at_ms=1)
    args = build_parser().parse_args(["report", "reconcile", "--day", DAY.isoformat(), "--batch-run-id", run_id])

    exit_code = args.handler(args, settings)

    assert exit_code == 0
    rows = read_report_rows(settings)
    assert rows["ad-1"]["speed_final_clicks"] == "4"
    assert rows["ad-1"]["batch_clicks"] == "4"
    assert rows["ad-2"]["speed_final_clicks"] == "3"
    assert rows["ad-2"]["batch_clicks"] == "3"
    # The catch-up pass stored what it read, so the file now closes the day.
    store = ServingStore(settings.serving_duckdb_path, settings.billing_timezone)
    try:
        assert store.closed_runs() == {DAY: run_id}
    finally:
        store.close()


def test_reconcile_without_server_rejects_other_run(command_settings) -> None:
    settings = command_settings
    write_batch_run(settings, DAY, {("ad-1", NOON): 4}, started_at_ms=1)
    args = build_parser().parse_args(["report", "reconcile", "--day", DAY.isoformat(),
                                      "--batch-run-id", "run-not-loaded"])

    assert args.handler(args, settings) == 2


def test_reconcile_waits_for_server_to_close_day(command_settings) -> None:
    settings = command_settings
    server = start_adclick(settings, "serve", log_name="serve")
    try:
        wait_for_http(f"http://127.0.0.1:{settings.serving_port}/healthz", server)
        run_id = f"run-{DAY}-waited"
        command = subprocess.Popen(
            [ADCLICK, "report", "reconcile", "--day", DAY.isoformat(), "--batch-run-id", run_id,
             "--wait-for-batch-s", "120"],
            env={**os.environ, **settings.to_environ()}, cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Write the batch run only once the server has answered 409 for the day.
        output = []
        for line in command.stderr:
            output.append(line)
            if "retry 1 " in line:
                break
        write_batch_run(settings, DAY, {("ad-1", NOON): 4}, started_at_ms=1, run_id=run_id)
        stdout, stderr = command.communicate(timeout=180)
        output.append(stderr)
    finally:
        stop(server)

    log = "".join(output)
    assert "retry 1 " in log, log
    assert "no successful batch run loaded yet" in log, log
    # With no speed-layer counts, ad-1's 4 batch clicks are unexplained, so
    # the command flags the row and exits with 1.
    assert command.returncode == 1, log
    assert f"(batch run {run_id})" in stdout
    assert read_report_rows(settings)["ad-1"]["batch_clicks"] == "4"
