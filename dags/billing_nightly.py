"""Nightly billing: recompute each billing day once landing has passed its end.

One run per local day of ``billing_timezone``: the cron timetable fires at
local midnight and its data interval is exactly the previous local day, so a
daylight-saving day covers 23 or 25 hours. Catchup is on, so every missed day
since ``airflow_first_billing_day`` gets its run, and at most
``airflow_billing_max_active_runs`` run at a time.

Each run waits until raw landing has caught up past the day's end plus
``airflow_day_end_grace_s``, recomputes the day and then every dirty day
(days that received late clicks), checks the gold totals and writes the
reconciliation report. Backfill runs skip the dirty-day pass, so a backfill
recomputes each of its days once. Recomputing replaces a day's rows, so
running a day again changes no total.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from airflow.sdk import DAG, PokeReturnValue, task
from airflow.timetables.interval import CronDataIntervalTimetable

from dags.common.config import (
    billing_day_of_run,
    dag_settings,
    default_task_args,
    first_billing_day_start,
)
from dags.common.spark import BatchJobSubmitOperator

DAG_ID = "billing_nightly"
RECOMPUTE_JOB = "batch_layer/recompute_job.py"
# Fires at local midnight; each data interval runs from one midnight to the next.
LOCAL_MIDNIGHT_CRON = "0 0 * * *"

logger = logging.getLogger(__name__)
settings = dag_settings()
spark_timeout = timedelta(seconds=settings.airflow_spark_timeout_s)

with DAG(
    dag_id=DAG_ID,
    description="Recompute each billing day, check its totals and write its reconciliation report",
    schedule=CronDataIntervalTimetable(LOCAL_MIDNIGHT_CRON, timezone=settings.billing_timezone),
    start_date=first_billing_day_start(settings),
    catchup=True,
    max_active_runs=settings.airflow_billing_max_active_runs,
    default_args=default_task_args(settings),
    tags=["adclick", "batch", "billing"],
) as dag:

    @task(task_id="resolve_billing_day")
    def resolve_billing_day(**context) -> str:
        """Return the run's billing day as YYYY-MM-DD."""
        day = billing_day_of_run(context, dag_settings())
        logger.info("Billing run: dag_id=%s run_id=%s logical_date=%s billing_day=%s",
                    DAG_ID, context["run_id"], context.get("logical_date"), day)
        return day.isoformat()

    @task.sensor(
        task_id="wait_for_landing",
        mode="reschedule",
        poke_interval=settings.airflow_landing_poke_interval_s,
        timeout=settings.airflow_landing_wait_timeout_s,
    )
    def wait_for_landing(billing_day: str, **context) -> PokeReturnValue:
        """Pass once bronze contains every click ingested before day end plus the grace period."""
        from dags.common.delta_reads import landed_through_ms
        from shared_logic.time_buckets import day_bounds_ms

        current = dag_settings()
        day_end_ms = day_bounds_ms(date.fromisoformat(billing_day), current.billing_zone)[1]
        deadline_ms = day_end_ms + current.airflow_day_end_grace_s * 1000
        landed_ms = landed_through_ms(current)
        caught_up = landed_ms is not None and landed_ms >= deadline_ms
        logger.info("Landing check: run_id=%s billing_day=%s landed_through_ms=%s deadline_ms=%s caught_up=%s",
                    context["run_id"], billing_day, landed_ms, deadline_ms, caught_up)
        return PokeReturnValue(is_done=caught_up, xcom_value=landed_ms)

    billing_day = resolve_billing_day()

    recompute_day = BatchJobSubmitOperator(
        task_id="recompute_day",
        job_file=RECOMPUTE_JOB,
        application_args=["--day", billing_day],
        execution_timeout=spark_timeout,
        # recompute_job.py claims a day in batch_runs and fails while another
        # run has claimed it, so Spark recomputes run one at a time across runs.
        max_active_tis_per_dag=1,
    )

    @task.short_circuit(task_id="dirty_pass_due", ignore_downstream_trigger_rules=False)
    def dirty_pass_due(**context) -> bool:
        """Return False for a backfill run, which recomputes only its own day."""
        run_type = context["dag_run"].run_type
        logger.info("Dirty-day pass: run_id=%s run_type=%s", context["run_id"], run_type)
        return run_type != "backfill"

    recompute_dirty_days = BatchJobSubmitOperator(
        task_id="recompute_dirty_days",
        job_file=RECOMPUTE_JOB,
        application_args=["--dirty"],
        execution_timeout=spark_timeout,
        max_active_tis_per_dag=1,
    )

    # none_failed: the check also runs when a backfill skipped the dirty-day pass.
    @task(task_id="check_results", trigger_rule="none_failed")
    def check_results(billing_day: str, **context) -> dict:
        """Fail the run when the day's gold totals and batch_runs row disagree."""
        from dags.common.delta_reads import check_day_results

        results = check_day_results(dag_settings(), date.fromisoformat(billing_day))
        logger.info("Billing check passed: run_id=%s billing_day=%s batch_run_id=%s gold_rows=%s "
                    "gold_clicks=%s accepted_clicks=%s", context["run_id"], billing_day,
                    results.run_id, results.gold_rows, results.gold_clicks, results.accepted_clicks)
        return results.as_dict()

    @task(task_id="reconciliation_report")
    def reconciliation_report(billing_day: str, checked: dict, **context) -> dict:
        """Write the day's speed-versus-batch reconciliation report for the checked batch run."""
        from dags.common.reports import write_reconciliation_report

        return write_reconciliation_report(dag_settings(), date.fromisoformat(billing_day),
                                           run_id=context["run_id"], batch_run_id=checked["run_id"])

    checked = check_results(billing_day)
    (
        wait_for_landing(billing_day)
        >> recompute_day
        >> dirty_pass_due()
        >> recompute_dirty_days
        >> checked
        >> reconciliation_report(billing_day, checked)
    )
