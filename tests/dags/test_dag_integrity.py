"""Every DAG file imports cleanly and quickly, with no database or connection access."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dags.conftest import DAGS_FOLDER

# A generous bound on one DAG file's own import time, past Airflow's imports;
# a file that opens Spark, a database or the network takes far longer.
PARSE_TIME_LIMIT_S = 5.0
PROBE = Path(__file__).with_name("parse_probe.py")
DAG_FILES = sorted(path for path in DAGS_FOLDER.glob("*.py") if path.name != "__init__.py")
EXPECTED_DAG_IDS = {"raw_landing.py": ["raw_landing"], "billing_nightly.py": ["billing_nightly"]}


def test_every_dag_file_is_covered():
    assert sorted(path.name for path in DAG_FILES) == sorted(EXPECTED_DAG_IDS)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_dag_file_parses_cleanly(dag_file: Path, tmp_path: Path):
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("AIRFLOW_CONN_", "ADCLICK_"))}
    environment.update({
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'never-created.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    })
    completed = subprocess.run([sys.executable, str(PROBE), str(dag_file)], env=environment,
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])

    assert report["dag_ids"] == EXPECTED_DAG_IDS[dag_file.name]
    assert report["warnings"] == []
    assert report["connection_lookups"] == []
    assert not report["database_created"], "parsing the DAG file opened the metadata database"
    assert report["seconds"] < PARSE_TIME_LIMIT_S, f"parsing took {report['seconds']:.2f} s"


def test_dagbag_has_no_import_errors(monkeypatch):
    from tests.dags.conftest import load_dags

    assert sorted(load_dags(monkeypatch)) == ["billing_nightly", "raw_landing"]
