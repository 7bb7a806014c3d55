"""Execute one DAG file the way a DAG processor imports it and report what it did.

Run as ``python parse_probe.py DAG_FILE`` with a metadata database URL that
points at a file that does not exist yet. Prints one JSON object: the DAG ids,
the parse time in seconds, the warnings the file raised, the connections it
looked up and whether the database file appeared.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
import warnings
from pathlib import Path


def main(dag_file: str) -> None:
    # Import what every DAG processor has loaded already, so the timing and the
    # warnings below belong to the DAG file alone.
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator  # noqa: F401
    from airflow.sdk import DAG, BaseHook, task  # noqa: F401

    task.sensor  # noqa: B018  (the decorator loads the standard provider lazily)

    lookups: list[str] = []

    def record_lookup(conn_id, *args, **kwargs):
        lookups.append(conn_id)
        raise RuntimeError(f"connection {conn_id!r} looked up at parse time")

    BaseHook.get_connection = classmethod(lambda cls, conn_id, *a, **k: record_lookup(conn_id))

    database_file = Path(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        namespace = runpy.run_path(dag_file, run_name="dag_file_under_test")
        seconds = time.perf_counter() - started
    dag_ids = sorted(value.dag_id for value in namespace.values() if isinstance(value, DAG))
    print(json.dumps({
        "dag_ids": dag_ids,
        "seconds": seconds,
        "warnings": [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught],
        "connection_lookups": lookups,
        "database_created": database_file.exists(),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
