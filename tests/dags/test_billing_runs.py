"""Real runs of the DAGs on a small landed data set: Kafka, spark-submit and Delta.

Clicks for three New York billing days, one of them the 23-hour
spring-forward day, go to a private topic. ``raw_landing`` lands them with
``dag.test()``, and ``billing_nightly`` runs once per day with ``dag.test()``.
A backfill of the same days through a local Airflow (API server, scheduler,
DAG processor, LocalExecutor) must then give the same totals, twice.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from deltalake import DeltaTable
from kafka import KafkaProducer

from infra.topics import ensure_topics
from shared_logic.settings import Settings
from shared_logic.time_buckets import to_epoch_ms
from tests.conftest import free_port
from tests.dags.conftest import load_dags

logger = logging.getLogger(__name__)

ZONE_NAME = "America/New_York"
ZONE = ZoneInfo(ZONE_NAME)
DAYS = [date(2024, 3, 9), date(2024, 3, 10), date(2024, 3, 11)]
BACKFILL_TIMEOUT_S = 240


def click_records(day: date) -> list[dict]:
    """Return the day's clicks: three ads, local times near both ends of the day, one duplicate."""
    records = []
    for index, (hour, minute, ad_id) in enumerate([(0, 5, "ad-a"), (1, 30, "ad-a"), (3, 10, "ad-b"),
                                                   (12, 0, "ad-b"), (23, 55, "ad-c")]):
        event_time_ms = to_epoch_ms(datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE))
        records.append({
            "click_id": f"{day}-{index}", "ad_id": ad_id, "user_id": f"user-{index}",
            "timestamp": datetime.fromtimestamp(event_time_ms / 1000, ZoneInfo("UTC")).isoformat(),
            "event_time_ms": event_time_ms, "click_id_source": "client", "attributes": {},
            "received_at_ms": int(time.time() * 1000),
        })
    records.append(dict(records[0]))  # a retried delivery of the first click
    return records


def produce(settings: Settings, records: list[dict]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    try:
        for record in records:
            producer.send(settings.topic_clicks, key=record["click_id"].encode(),
                          value=json.dumps(record).encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def run_environment(settings: Settings) -> dict[str, str]:
    """Return what ``adclick airflow`` sets for tasks, except AIRFLOW_HOME and the database."""
    from infra.airflow_local import airflow_environment

    environment = airflow_environment(settings)
    return {name: value for name, value in environment.items()
            if not name.startswith(("AIRFLOW_HOME", "AIRFLOW__DATABASE__", "AIRFLOW__CORE__DAGS_FOLDER"))}


def day_totals(settings: Settings) -> dict[str, tuple[int, int]]:
    """Return {billing day: (gold clicks, duplicates removed)} from the gold daily table."""
    rows = DeltaTable(str(settings.path("delta", "billing_clicks_daily"))).to_pyarrow_table().to_pylist()
    totals: dict[str, tuple[int, int]] = {}
    for row in rows:
        clicks, duplicates = totals.get(str(row["billing_day"]), (0, 0))
        totals[str(row["billing_day"])] = (clicks + row["clicks"], duplicates + row["duplicates_removed"])
    return totals


def succeeded_runs_per_day(settings: Settings) -> dict[str, int]:
    rows = DeltaTable(str(settings.path("delta", "batch_runs"))).to_pyarrow_table().to_pylist()
    counts: dict[str, int] = {}
    for row in rows:
        if row["status"] == "succeeded":
            counts[str(row["billing_day"])] = counts.get(str(row["billing_day"]), 0) + 1
    return counts


@pytest.fixture(scope="module")
def billing_settings(base_settings: Settings, kafka_broker, tmp_path_factory) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    settings = base_settings.replace(
        data_dir=tmp_path_factory.mktemp("billing-runs"),
        topic_clicks=f"clicks-{suffix}", topic_clicks_rejected=f"clicks-rejected-{suffix}",
        topic_clicks_late=f"clicks-late-{suffix}", topic_click_counts=f"click-counts-{suffix}",
        topic_late_counts=f"late-click-counts-{suffix}",
        billing_timezone=ZONE_NAME, airflow_first_billing_day="2024-03-01",
        airflow_task_retries=0, airflow_port=free_port(), airflow_landing_poke_interval_s=5,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def landed(billing_settings: Settings):
    """Land three days of clicks with raw_landing; return the parsed DAGs."""
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=os.environ,
                             capture_output=True, text=True, timeout=300, check=False)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    for day in DAYS:
        produce(billing_settings, click_records(day))

    with pytest.MonkeyPatch.context() as monkeypatch:
        dags = load_dags(monkeypatch, run_environment(billing_settings))
        landing = dags["raw_landing"].test()
        assert landing.state == "success", "raw_landing failed; see the task log above"
        yield dags


def run_nightly(dags, day: date):
    """Run billing_nightly for one day with dag.test() and return the DAG run."""
    # A manual run's data interval ends at the latest local midnight at or
    # before its logical date, so the following midnight selects the day.
    following = day + timedelta(days=1)
    logical_date = datetime(following.year, following.month, following.day, tzinfo=ZONE)
    return dags["billing_nightly"].test(logical_date=logical_date)


def test_nightly_run_writes_gold_and_report(billing_settings, landed):
    day = DAYS[1]  # the 23-hour spring-forward day
    run = run_nightly(landed, day)

    assert run.state == "success", f"billing_nightly for {day} ended {run.state}"
    assert day_totals(billing_settings) == {"2024-03-10": (5, 1)}
    assert succeeded_runs_per_day(billing_settings) == {"2024-03-10": 1}
    assert (billing_settings.reports_dir / f"reconciliation-{day}.csv").exists()
    assert (billing_settings.reports_dir / f"reconciliation-{day}.html").exists()


# NOTE: this test runs nine spark-submits and a whole local Airflow, several
# minutes on two cores, so it only runs on request.
@pytest.mark.skipif(os.environ.get("ADCLICK_AIRFLOW_BACKFILL_TEST") != "1",
                    reason="takes several minutes of spark-submit; set ADCLICK_AIRFLOW_BACKFILL_TEST=1")
def test_backfill_matches_single_runs(billing_settings, landed, tmp_path):
    from infra.airflow_local import LocalAirflow

    for day in DAYS:
        run = run_nightly(landed, day)
        assert run.state == "success", f"billing_nightly for {day} ended {run.state}"
    single_totals = day_totals(billing_settings)
    assert sorted(single_totals) == [day.isoformat() for day in DAYS]
    single_run_counts = succeeded_runs_per_day(billing_settings)
    airflow = LocalAirflow(billing_settings, home=tmp_path / "airflow", use_job_schedule=False)
    airflow.migrate()
    airflow.start()
    try:
        wait_for_dag(airflow, "billing_nightly")
        unpaused = airflow.run_cli("dags", "unpause", "billing_nightly")
        assert unpaused.returncode == 0, unpaused.stderr[-2000:]

        for backfill_number in (1, 2):
            created = airflow.run_cli(
                "backfill", "create", "--dag-id", "billing_nightly",
                "--from-date", DAYS[0].isoformat(), "--to-date", DAYS[-1].isoformat(),
                "--reprocess-behavior", "completed", "--max-active-runs", "1")
            assert created.returncode == 0, created.stderr[-2000:]
            states = wait_for_backfill_runs(airflow, backfill_number)

            assert sorted(states.values()) == ["success"] * 3, states
            assert day_totals(billing_settings) == single_totals
            # Each backfill recomputes each day exactly once more.
            assert succeeded_runs_per_day(billing_settings) == {
                day: count + backfill_number for day, count in single_run_counts.items()}
    finally:
        airflow.stop()


def wait_for_dag(airflow, dag_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        listed = airflow.run_cli("dags", "list", "--output", "json")
        if listed.returncode == 0 and dag_id in listed.stdout:
            return
        time.sleep(3)
    pytest.fail(f"the DAG processor did not register {dag_id} within 120 s; "
                f"see {airflow.log_file('dag-processor')}")


def wait_for_backfill_runs(airflow, backfill_number: int) -> dict[str, str]:
    """Wait until every run of the backfill has finished; return {logical date: state}."""
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        listed = airflow.run_cli("dags", "list-runs", "billing_nightly", "--output", "json")
        assert listed.returncode == 0, listed.stderr[-2000:]
        runs = [run for run in json.loads(listed.stdout or "[]") if run["run_type"] == "backfill"]
        states = {run["logical_date"]: run["state"] for run in runs}
        if len(runs) == 3 and all(state in ("success", "failed") for state in states.values()):
            return states
        time.sleep(5)
    pytest.fail(f"backfill {backfill_number} did not finish within {BACKFILL_TIMEOUT_S} s: {states}; "
                f"see {airflow.log_file('scheduler')}")
