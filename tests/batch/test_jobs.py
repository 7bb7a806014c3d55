"""The recompute job file under spark-submit, with the conf of spark_submit_conf."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import deltalake

from batch_layer.spark_session import spark_submit_conf
from batch_layer.tables import BATCH_RUNS, table_path
from shared_logic.settings import load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_recompute_job_runs_under_spark_submit(tmp_path: Path) -> None:
    settings = load_settings({}).replace(data_dir=tmp_path, billing_timezone="Asia/Kolkata")
    conf = {
        **spark_submit_conf(settings),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
    }
    spark_submit = Path(sys.executable).parent / "spark-submit"
    command = [str(spark_submit), "--master", "local[1]"]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command += [str(PROJECT_ROOT / "batch_layer" / "recompute_job.py"), "--day", "2026-12-04"]
    env = {**os.environ, **settings.to_environ(), "JAVA_HOME": str(settings.java_home),
           "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}

    finished = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert finished.returncode == 0, finished.stderr[-4000:]
    assert "billing day 2026-12-04 succeeded" in finished.stderr
    runs = deltalake.DeltaTable(str(table_path(settings, BATCH_RUNS))).to_pyarrow_table().to_pylist()
    assert [(row["billing_day"], row["status"], row["billing_timezone"], row["input_rows"]) for row in runs] == [
        (date(2026, 12, 4), "succeeded", "Asia/Kolkata", 0)]
