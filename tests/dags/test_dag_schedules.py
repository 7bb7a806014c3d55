"""Schedules, catchup, concurrency, retries and timeouts of the parsed DAGs."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from shared_logic.settings import load_settings
from shared_logic.time_buckets import day_bounds_ms, to_epoch_ms
from tests.dags.conftest import load_dags

NEW_YORK = "America/New_York"
ENVIRONMENT = {
    "ADCLICK_BILLING_TIMEZONE": NEW_YORK,
    "ADCLICK_AIRFLOW_LANDING_INTERVAL_S": "120",
    "ADCLICK_AIRFLOW_BILLING_MAX_ACTIVE_RUNS": "3",
    "ADCLICK_AIRFLOW_TASK_RETRIES": "4",
    "ADCLICK_AIRFLOW_SPARK_TIMEOUT_S": "1800",
    "ADCLICK_AIRFLOW_CHECK_TIMEOUT_S": "300",
    "ADCLICK_AIRFLOW_FIRST_BILLING_DAY": "2024-03-01",
}
SPARK_TASKS = {"recompute_day", "recompute_dirty_days"}


@pytest.fixture
def dags(monkeypatch):
    return load_dags(monkeypatch, ENVIRONMENT)


def test_raw_landing_schedule(dags):
    dag = dags["raw_landing"]

    assert dag.timetable.summary == str(timedelta(seconds=120))
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.get_task("land_clicks").application_args == ["--once"]
    assert dag.get_task("land_clicks").application.endswith("batch_layer/land_job.py")


def test_billing_nightly_schedule(dags):
    dag = dags["billing_nightly"]

    assert dag.catchup is True
    assert dag.max_active_runs == 3
    assert dag.start_date == datetime(2024, 3, 1, tzinfo=ZoneInfo(NEW_YORK))
    assert dag.timetable.summary == "0 0 * * *"
    assert str(dag.timetable._timezone.name) == NEW_YORK


def test_billing_nightly_task_order(dags):
    dag = dags["billing_nightly"]
    order = ["resolve_billing_day", "wait_for_landing", "recompute_day", "dirty_pass_due",
             "recompute_dirty_days", "check_results", "reconciliation_report"]

    for upstream, downstream in zip(order, order[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids, f"{upstream} >> {downstream}"
    assert dag.get_task("check_results").trigger_rule == "none_failed"


@pytest.mark.parametrize("dag_id", ["raw_landing", "billing_nightly"])
def test_tasks_retry_with_backoff_and_timeout(dags, dag_id):
    for task in dags[dag_id].tasks:
        assert task.retries == 4, task.task_id
        assert task.retry_exponential_backoff, task.task_id
        assert task.max_retry_delay == timedelta(seconds=1800), task.task_id
        assert task.execution_timeout is not None, task.task_id
        assert task.on_failure_callback, task.task_id


def test_spark_tasks_use_spark_provider(dags):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    dag = dags["billing_nightly"]
    for task_id in SPARK_TASKS:
        task = dag.get_task(task_id)
        assert isinstance(task, SparkSubmitOperator)
        assert task._conn_id == "spark_default"
        assert task.execution_timeout == timedelta(seconds=1800)
        assert task.max_active_tis_per_dag == 1
    assert dag.get_task("check_results").execution_timeout == timedelta(seconds=300)


def test_landing_sensor_reschedules(dags):
    sensor = dags["billing_nightly"].get_task("wait_for_landing")

    assert sensor.mode == "reschedule"
    assert sensor.poke_interval == load_settings({}).airflow_landing_poke_interval_s
    assert sensor.timeout == load_settings({}).airflow_landing_wait_timeout_s


# dag.test() in Airflow 3.1.8 calls the callback without "exception"; a worker sets it.
@pytest.mark.parametrize(("extra_context", "expected_error"), [
    ({"exception": RuntimeError("spark-submit exited with 1")}, "spark-submit exited with 1"),
    ({}, "error=not passed to the callback; see the task log"),
])
def test_failure_callback_logs_run_ids(monkeypatch, caplog, extra_context, expected_error):
    from dags.common.config import log_task_failure

    monkeypatch.setenv("ADCLICK_BILLING_TIMEZONE", NEW_YORK)
    context = {
        "ti": SimpleNamespace(dag_id="billing_nightly", task_id="recompute_day", try_number=2),
        "dag_run": SimpleNamespace(run_id="scheduled__2024-03-10T05:00:00+00:00", conf={}),
        "logical_date": datetime(2024, 3, 10, 5, tzinfo=ZoneInfo("UTC")),
        "data_interval_start": datetime(2024, 3, 10, 5, tzinfo=ZoneInfo("UTC")),
        **extra_context,
    }
    with caplog.at_level(logging.ERROR, logger="dags.common.config"):
        log_task_failure(context)

    message = caplog.records[-1].getMessage()
    assert "run_id=scheduled__2024-03-10T05:00:00+00:00" in message
    assert "billing_day=2024-03-10" in message
    assert "dag_id=billing_nightly" in message
    assert expected_error in message


def test_billing_day_from_conf_overrides_interval():
    from dags.common.config import billing_day_of_run

    settings = load_settings({"ADCLICK_BILLING_TIMEZONE": NEW_YORK})
    scheduled = {"dag_run": SimpleNamespace(conf={}),
                 "data_interval_start": datetime(2024, 11, 3, 4, tzinfo=ZoneInfo("UTC"))}
    manual = {"dag_run": SimpleNamespace(conf={"billing_day": "2024-11-02"}),
              "data_interval_start": datetime(2024, 11, 3, 4, tzinfo=ZoneInfo("UTC"))}

    assert billing_day_of_run(scheduled, settings) == date(2024, 11, 3)
    assert billing_day_of_run(manual, settings) == date(2024, 11, 2)
    with pytest.raises(ValueError, match="not a date"):
        billing_day_of_run({"dag_run": SimpleNamespace(conf={"billing_day": "11/02"})}, settings)

