"""Airflow for the DAG tests: a private AIRFLOW_HOME and SQLite metadata database.

Airflow reads its configuration when it is first imported, so this module
sets the AIRFLOW_* variables before any test imports airflow.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

from shared_logic.settings import PROJECT_ROOT

if "airflow" in sys.modules:
    raise RuntimeError("airflow was imported before tests/dags/conftest.py could point "
                       "AIRFLOW_HOME at a temporary folder; import it only inside tests")

AIRFLOW_TEST_HOME = Path(tempfile.mkdtemp(prefix="adclick-airflow-tests-"))
DAGS_FOLDER = PROJECT_ROOT / "dags"
os.environ.update({
    "AIRFLOW_HOME": str(AIRFLOW_TEST_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_TEST_HOME / 'airflow.db'}",
})


def load_dags(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str] | None = None) -> dict:
    """Parse dags/ with ``environment`` set, as the DAG processor does; return DAGs by id."""
    from airflow.models.dagbag import DagBag

    for name, value in (environment or {}).items():
        monkeypatch.setenv(name, value)
    with warnings.catch_warnings():
        # Airflow 3.1.8 reads .airflowignore through a pathspec class that
        # pathspec itself deprecates; the warning is not about our DAGs.
        warnings.filterwarnings("ignore", message=r"GitWildMatchPattern", category=DeprecationWarning)
        bag = DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False)
    assert bag.import_errors == {}, f"DAG import errors: {bag.import_errors}"
    return bag.dags
