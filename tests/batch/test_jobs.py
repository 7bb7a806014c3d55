"""The job entry points: the adclick commands and recompute_job.py under spark-submit."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import deltalake
import pytest

from batch_layer import land_job, recompute_job
from batch_layer.spark_session import spark_submit_conf
from batch_layer.tables import BATCH_RUNS, table_path
from infra.cli import build_parser
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

    finished = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)

    # spark-submit's PythonRunner merges the Python driver's stderr into its stdout.
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-4000:]
    assert "billing day 2026-12-04 succeeded" in output
    runs = deltalake.DeltaTable(str(table_path(settings, BATCH_RUNS))).to_pyarrow_table().to_pylist()
    assert [(row["billing_day"], row["status"], row["billing_timezone"], row["input_rows"]) for row in runs] == [
        (date(2026, 12, 4), "succeeded", "Asia/Kolkata", 0)]


def test_cli_parses_batch_commands() -> None:
    parser = build_parser()
    recompute = parser.parse_args(["recompute", "--day", "2026-12-04", "--day", "2026-12-05"])
    dirty = parser.parse_args(["recompute", "--dirty"])
    land = parser.parse_args(["land", "--once"])

    assert recompute.handler is recompute_job.run
    assert recompute.day == [date(2026, 12, 4), date(2026, 12, 5)]
    assert dirty.dirty is True
    assert land.handler is land_job.run
    assert land.once is True


def test_cli_rejects_invalid_day(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["recompute", "--day", "04.12.2026"])
    assert "use YYYY-MM-DD" in capsys.readouterr().err
