"""Spark configuration for the batch layer, shared by local mode and spark-submit.

``spark_submit_conf`` is the one place that lists the jars, the Delta Lake
extension and the time zone. ``adclick land`` and ``adclick recompute`` build
a local session from it; a scheduler passes the same dict as ``--conf``
pairs to ``spark-submit --master spark://...``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pyspark.sql import SparkSession

from shared_logic.settings import Settings

logger = logging.getLogger(__name__)

# Spark evaluates every expression of the batch layer without the session time
# zone, so this value only affects how timestamps are displayed; UTC keeps
# logs and ad-hoc queries unambiguous.
SESSION_TIMEZONE = "UTC"


class MissingJars(RuntimeError):
    """The Delta Lake and Kafka jars have not been fetched."""


def spark_jars(settings: Settings) -> list[Path]:
    """Return the jar files Spark needs, from ``build/jars/spark``."""
    jar_dir = settings.jars_dir / "spark"
    jars = sorted(jar_dir.glob("*.jar"))
    if not any(jar.name.startswith("delta-spark") for jar in jars):
        raise MissingJars(f"no Delta Lake jar in {jar_dir}; run `make setup` to fetch the Spark jars")
    return jars


def spark_submit_conf(settings: Settings) -> dict[str, str]:
    """Return the Spark configuration of every batch job, as ``--conf`` key/value pairs."""
    timezone_option = f"-Duser.timezone={SESSION_TIMEZONE}"
    return {
        "spark.jars": ",".join(str(jar) for jar in spark_jars(settings)),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": SESSION_TIMEZONE,
        "spark.driver.extraJavaOptions": timezone_option,
        "spark.executor.extraJavaOptions": timezone_option,
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.executor.memory": settings.spark_executor_memory,
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        # Tasks used to rebuild a Delta snapshot from its log (Delta's default is 50).
        "spark.databricks.delta.snapshotPartitions": str(settings.spark_shuffle_partitions),
        # The serving layer reads with delta-rs 1.6, so new tables get no
        # deletion vectors, which UPDATE and MERGE could otherwise add.
        "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
        # Every replaceWhere write of the batch layer sets the partition column
        # to the replaced day itself, so Delta's extra pass to check that is skipped.
        "spark.databricks.delta.replaceWhere.constraintCheck.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }


def launched_by_spark_submit() -> bool:
    """Return True when this Python process is the driver of a ``spark-submit`` run."""
    # spark-submit starts the JVM first and hands its gateway port to Python.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark_session(settings: Settings, app_name: str,
                        extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Return a Spark session with Delta Lake, local unless run by spark-submit.

    Under spark-submit the JVM already runs with the submitted conf, so only
    the session-level keys of ``extra_conf`` can still change anything.
    """
    builder = SparkSession.builder.appName(app_name)
    if launched_by_spark_submit():
        conf = dict(extra_conf or {})
    else:
        # Local mode: Java 17 from the settings, and every socket on loopback.
        os.environ["JAVA_HOME"] = str(settings.java_home)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        conf = {
            **spark_submit_conf(settings),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            **(extra_conf or {}),
        }
        builder = builder.master(settings.spark_master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    logger.info("Spark %s session %s started, master %s", spark.version, app_name,
                spark.sparkContext.master)
    return spark
