"""Real runs of the DAGs on a small landed data set: Kafka, spark-submit, Delta and ``adclick serve``.

Clicks for three New York billing days, one of them the 23-hour
spring-forward day, go to a private topic. ``raw_landing`` lands them with
``dag.test()``, and ``billing_nightly`` runs the spring-forward day with
``dag.test()``: its dirty-day pass also computes the other two days, which
have raw clicks but no batch run yet. A local Airflow (API server, scheduler, DAG processor,
LocalExecutor on SQLite) then backfills the last two days twice, and each
time the gold totals must equal the totals computed from the input clicks.

A real ``adclick serve`` runs for the whole module, as in production, so the
report task requests the reconciliation from it.
"""

from __future__ import annotations

import csv
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
import requests
from deltalake import DeltaTable
from kafka import KafkaProducer

from infra.topics import ensure_topics
from shared_logic.settings import Settings
from shared_logic.time_buckets import to_epoch_ms
from tests.conftest import free_port
from tests.dags.conftest import load_dags
from tests.processes import start_adclick, stop, wait_for_http

logger = logging.getLogger(__name__)

ZONE_NAME = "America/New_York"
ZONE = ZoneInfo(ZONE_NAME)
DAYS = [date(2024, 3, 9), date(2024, 3, 10), date(2024, 3, 11)]
# The backfill covers the spring-forward day and the day after, so its
# logical dates cross the change from EST to EDT. Each day costs one
# spark-submit per backfill, which is why it leaves out the first day.
BACKFILL_DAYS = DAYS[1:]
BACKFILL_TIMEOUT_S = 600


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


def expected_day_totals() -> dict[str, tuple[int, int]]:
    """Return {billing day: (distinct clicks, retried deliveries)} computed from the input clicks."""
    totals = {}
    for day in DAYS:
        records = click_records(day)
        distinct = {record["click_id"] for record in records}
        totals[day.isoformat()] = (len(distinct), len(records) - len(distinct))
    return totals


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
        serving_port=free_port(), serving_delta_poll_interval_s=1.0,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def serving(billing_settings: Settings):
    """A running ``adclick serve`` on the module's settings, stopped at the end of the module."""
    process = start_adclick(billing_settings, "serve", log_name="serve")
    try:
        wait_for_http(f"http://127.0.0.1:{billing_settings.serving_port}/healthz", process, timeout_s=120)
        yield process
    finally:
        stop(process)


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


def test_nightly_run_writes_gold_and_report(billing_settings, landed, serving):
    day = DAYS[1]  # the 23-hour spring-forward day
    run = run_nightly(landed, day)

    assert run.state == "success", f"billing_nightly for {day} ended {run.state}"
    # recompute_day computes the run's day, and the dirty-day pass every
    # other day with raw clicks and no successful batch run.
    assert day_totals(billing_settings) == expected_day_totals()
    assert succeeded_runs_per_day(billing_settings) == {other.isoformat(): 1 for other in DAYS}
    with open(billing_settings.reports_dir / f"reconciliation-{day}.csv", newline="") as handle:
        batch_clicks = sum(int(row["batch_clicks"]) for row in csv.DictReader(handle))
    assert batch_clicks == expected_day_totals()[day.isoformat()][0]
    assert (billing_settings.reports_dir / f"reconciliation-{day}.html").exists()


def test_backfill_matches_input_totals(billing_settings, landed, serving, tmp_path):
    from infra.airflow_local import LocalAirflow

    # Days outside the backfill keep what an earlier run computed, if any.
    runs_before = succeeded_runs_per_day(billing_settings)
    backfill_days = {day.isoformat() for day in BACKFILL_DAYS}
    expected = {day: totals for day, totals in expected_day_totals().items()
                if day in backfill_days or day in runs_before}
    airflow = LocalAirflow(billing_settings, home=tmp_path / "airflow", use_job_schedule=False)
    airflow.migrate()
    airflow.start()
    try:
        token = api_token(airflow)
        version = requests.get(f"{airflow.base_url}/api/v2/version", timeout=30,
                               headers={"Authorization": f"Bearer {token}"})
        assert version.status_code == 200, version.text
        assert version.json()["version"].startswith("3.1."), version.text
        wait_for_dag(airflow, token, "billing_nightly")
        unpaused = airflow.run_cli("dags", "unpause", "billing_nightly")
        assert unpaused.returncode == 0, unpaused.stderr[-2000:]
        failing_run_id = trigger_failing_run(airflow)

        for backfill_number, reprocess in ((1, "none"), (2, "completed")):
            created = airflow.run_cli(
                "backfill", "create", "--dag-id", "billing_nightly",
                "--from-date", BACKFILL_DAYS[0].isoformat(), "--to-date", BACKFILL_DAYS[-1].isoformat(),
                "--reprocess-behavior", reprocess, "--max-active-runs", "2")
            assert created.returncode == 0, created.stderr[-2000:]
            states = wait_for_backfill(airflow, token, backfill_number)

            assert sorted(states.values()) == ["success"] * len(BACKFILL_DAYS), states
            assert day_totals(billing_settings) == expected
            # Each backfill recomputes each of its days exactly once more and
            # leaves the other days alone.
            assert succeeded_runs_per_day(billing_settings) == {
                day: runs_before.get(day, 0) + (backfill_number if day in backfill_days else 0)
                for day in expected}

        assert run_state(airflow, failing_run_id) == "failed"
        callback_lines = [line for path in (airflow.home / "logs").rglob("*.log") for line in
                          path.read_text(errors="replace").splitlines()
                          if "Task failed:" in line and failing_run_id in line]
        assert callback_lines, f"no failure callback line for {failing_run_id} under {airflow.home / 'logs'}"
        assert "ValueError" in callback_lines[0], callback_lines[0]
        assert "not a date" in callback_lines[0], callback_lines[0]
    finally:
        airflow.stop()


def api_token(airflow) -> str:
    """Log in to the local Airflow as admin with the generated password; return the JWT."""
    password = json.loads(airflow.password_file.read_text())["admin"]
    response = requests.post(f"{airflow.base_url}/auth/token", timeout=30,
                             json={"username": "admin", "password": password})
    assert response.status_code in (200, 201), response.text
    return response.json()["access_token"]


def wait_for_dag(airflow, token: str, dag_id: str) -> None:
    """Wait until the DAG processor has stored ``dag_id`` in the metadata database."""
    url = f"{airflow.base_url}/api/v2/dags/{dag_id}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        if response.status_code == 200:
            return
        time.sleep(2)
    pytest.fail(f"the DAG processor did not register {dag_id} within 180 s; "
                f"see {airflow.log_file('dag-processor')}")


def trigger_failing_run(airflow) -> str:
    """Trigger a manual run whose billing day is invalid, so its first task fails; return its run_id."""
    run_id = f"manual__invalid-day-{uuid.uuid4().hex[:6]}"
    triggered = airflow.run_cli("dags", "trigger", "billing_nightly", "--run-id", run_id,
                                "--conf", json.dumps({"billing_day": "03/10/2024"}))
    assert triggered.returncode == 0, triggered.stderr[-2000:]
    return run_id


def list_runs(airflow) -> list[dict]:
    """Return billing_nightly's DAG runs as ``airflow dags list-runs`` prints them in JSON."""
    # Airflow 3.1.8 prints dag_id, run_id, state, run_after, logical_date,
    # start_date and end_date for each run, but not run_type.
    listed = airflow.run_cli("dags", "list-runs", "billing_nightly", "--output", "json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    return json.loads(listed.stdout or "[]")


def run_state(airflow, run_id: str) -> str | None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = {run["run_id"]: run["state"] for run in list_runs(airflow)}
        if states.get(run_id) in ("success", "failed"):
            return states[run_id]
        time.sleep(3)
    return states.get(run_id)


def wait_for_backfill(airflow, token: str, backfill_number: int) -> dict[str, str]:
    """Wait until the backfill and each of its runs have finished; return {logical date: state}."""
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        # The scheduler sets a backfill's completed_at a loop after its last
        # run ends, and creating the next backfill fails until then.
        response = requests.get(f"{airflow.base_url}/api/v2/backfills", params={"dag_id": "billing_nightly"},
                                headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert response.status_code == 200, response.text
        backfills = response.json()["backfills"]
        # A backfill's run ids start with its run type; a second backfill
        # clears and requeues the same runs when it is created.
        runs = [run for run in list_runs(airflow) if run["run_id"].startswith("backfill__")]
        states = {run["logical_date"]: run["state"] for run in runs}
        runs_finished = len(runs) == len(BACKFILL_DAYS) and all(
            state in ("success", "failed") for state in states.values())
        backfills_completed = len(backfills) == backfill_number and all(
            backfill["completed_at"] for backfill in backfills)
        if runs_finished and backfills_completed:
            return states
        time.sleep(5)
    pytest.fail(f"backfill {backfill_number} did not finish within {BACKFILL_TIMEOUT_S} s: {states}; "
                f"see {airflow.log_file('scheduler')}")
