"""Raw landing: copy new clicks from Kafka into the bronze Delta table.

Every ``airflow_landing_interval_s`` the DAG runs ``batch_layer/land_job.py
--once``, which reads Kafka up to its end offsets at start and commits them to
``raw_clicks`` exactly once through its checkpoint. One run at a time, no
catchup: a later run lands everything an earlier one missed. After a
successful run the DAG records the run's start as landing progress, which
the nightly billing DAG waits on.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from airflow.sdk import DAG, task

from dags.common.config import dag_settings, default_task_args, first_billing_day_start
from dags.common.spark import BatchJobSubmitOperator

DAG_ID = "raw_landing"
LAND_JOB = "batch_layer/land_job.py"

logger = logging.getLogger(__name__)
settings = dag_settings()

with DAG(
    dag_id=DAG_ID,
    description="Land new Kafka clicks into the bronze Delta table (land_job.py --once)",
    schedule=timedelta(seconds=settings.airflow_landing_interval_s),
    start_date=first_billing_day_start(settings),
    catchup=False,
    max_active_runs=1,
    default_args=default_task_args(settings),
    tags=["adclick", "batch"],
) as dag:

    @task(task_id="mark_landing_start")
    def mark_landing_start() -> int:
        """Return the wall-clock time, in epoch ms, before the landing job reads Kafka."""
        from shared_logic.timestamps import now_ms

        return now_ms()

    land_clicks = BatchJobSubmitOperator(
        task_id="land_clicks",
        job_file=LAND_JOB,
        application_args=["--once"],
        execution_timeout=timedelta(seconds=settings.airflow_spark_timeout_s),
        # land_job.py keeps one checkpoint; two copies must never run at once.
        max_active_tis_per_dag=1,
    )

    @task(task_id="record_progress")
    def record_progress(started_ms: int, **context) -> int:
        """Store that everything ingested before this run started is in bronze."""
        from dags.common.delta_reads import record_landing_progress

        stored = record_landing_progress(dag_settings(), started_ms)
        logger.info("Landing progress: dag_id=%s run_id=%s landed_through_ms=%s",
                    DAG_ID, context["run_id"], stored)
        return stored

    started = mark_landing_start()
    started >> land_clicks >> record_progress(started)
