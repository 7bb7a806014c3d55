"""The Spark provider's ``SparkSubmitOperator`` for the batch layer's job files.

The master comes from the ``spark_default`` connection (built from
``spark_master``); jars, Delta settings, time zone and memory come from
``batch_layer.spark_session.spark_submit_conf``, read when the task runs so
that parsing a DAG imports neither the batch layer nor PySpark.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from dags.common.config import SPARK_CONN_ID, dag_settings
from shared_logic.settings import PROJECT_ROOT, Settings


def spark_environment(settings: Settings) -> dict[str, str]:
    """Return the environment of ``spark-submit``: Java 17 and the platform settings.

    In local mode the directory of this Python's ``spark-submit`` (PySpark's, in
    the project's virtual environment) goes first on PATH, because the provider
    only runs a binary named ``spark-submit`` found on PATH.
    """
    environment = settings.to_environ()
    environment["JAVA_HOME"] = str(settings.java_home)
    if settings.spark_master.startswith("local"):
        python_bin = Path(sys.executable).parent
        environment["PATH"] = f"{python_bin}{os.pathsep}{os.environ.get('PATH', '')}"
        environment["PYSPARK_PYTHON"] = sys.executable
    return environment


class BatchJobSubmitOperator(SparkSubmitOperator):
    """Submit one job file of the batch layer with the platform's Spark configuration."""

    def __init__(self, *, job_file: str, **kwargs: Any) -> None:
        super().__init__(
            application=str(PROJECT_ROOT / job_file),
            conn_id=SPARK_CONN_ID,
            name=f"adclick-{Path(job_file).stem}",
            **kwargs,
        )

    def execute(self, context: Any) -> None:
        from batch_layer.spark_session import spark_submit_conf

        settings = dag_settings()
        self.conf = {**spark_submit_conf(settings), **(self.conf or {})}
        self.env_vars = {**spark_environment(settings), **(self.env_vars or {})}
        return super().execute(context)
