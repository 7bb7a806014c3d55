"""Settings, task defaults and run ids shared by every DAG of the platform.

Everything here runs at parse time, so it only reads environment variables:
no metadata database, no connection lookup, no Spark.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from typing import Any

from shared_logic.settings import Settings, load_settings

logger = logging.getLogger(__name__)

SPARK_CONN_ID = "spark_default"
# dag_run.conf key that overrides the billing day of a manual run.
BILLING_DAY_CONF_KEY = "billing_day"


def dag_settings() -> Settings:
    """Load the platform settings from ``ADCLICK_*`` environment variables."""
    return load_settings()


def default_task_args(settings: Settings) -> dict[str, Any]:
    """Return the retry, timeout and failure-callback defaults of every task."""
    return {
        "owner": "billing",
        "retries": settings.airflow_task_retries,
        "retry_delay": timedelta(seconds=settings.airflow_retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(seconds=settings.airflow_max_retry_delay_s),
        "execution_timeout": timedelta(seconds=settings.airflow_check_timeout_s),
        "on_failure_callback": log_task_failure,
    }


def first_billing_day_start(settings: Settings) -> datetime:
    """Return local midnight of ``airflow_first_billing_day`` in the billing zone."""
    day = date.fromisoformat(settings.airflow_first_billing_day)
    return datetime(day.year, day.month, day.day, tzinfo=settings.billing_zone)


def billing_day_of_run(context: Any, settings: Settings) -> date:
    """Return the billing day a DAG run covers.

    A scheduled or backfill run covers its data interval, which starts at local
    midnight of the day. A manual run may name the day in its conf instead.
    """
    dag_run = context.get("dag_run")
    conf = (dag_run.conf or {}) if dag_run is not None else {}
    requested = conf.get(BILLING_DAY_CONF_KEY)
    if requested:
        try:
            return date.fromisoformat(str(requested))
        except ValueError as exc:
            raise ValueError(
                f"dag_run.conf {BILLING_DAY_CONF_KEY}={requested!r} is not a date; use YYYY-MM-DD"
            ) from exc
    start = context["data_interval_start"]
    return start.astimezone(settings.billing_zone).date()


def spark_connection_json(settings: Settings) -> str:
    """Return the ``AIRFLOW_CONN_SPARK_DEFAULT`` value for ``spark_master``.

    The connection lives in an environment variable so that neither parsing
    nor a task needs the metadata database to find it.
    """
    return json.dumps({
        "conn_type": "spark",
        "host": settings.spark_master,
        "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
    })


def log_task_failure(context: Any) -> None:
    """Log the ids of a failed task instance and its error (task failure callback).

    A task worker of Airflow 3.1.8 puts the error in ``context["exception"]``
    before it calls the callback.
    """
    ti = context.get("ti")
    dag_run = context.get("dag_run")
    try:
        day = billing_day_of_run(context, dag_settings()).isoformat()
    except (KeyError, TypeError, ValueError):
        day = "-"
    # NOTE: dag.test() in Airflow 3.1.8 runs tasks through the in-process test
    # supervisor, which calls the callback without setting "exception", so
    # there the error is only in the task log.
    error = context.get("exception")
    logger.error(
        "Task failed: dag_id=%s task_id=%s run_id=%s logical_date=%s billing_day=%s try=%s error=%s",
        getattr(ti, "dag_id", None), getattr(ti, "task_id", None),
        getattr(dag_run, "run_id", None), context.get("logical_date"), day,
        getattr(ti, "try_number", None),
        "not passed to the callback; see the task log" if error is None else repr(error),
    )
