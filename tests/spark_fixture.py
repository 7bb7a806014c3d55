"""The one Spark session of the test run, and a row-order-free equality check.

Registered in tests/conftest.py through ``pytest_plugins``. The session runs
local[2] with the UI off and few shuffle partitions. Its JVM runs in
Pacific/Chatham (UTC+12:45 or +13:45) and its SQL session in
America/St_Johns (UTC-3:30 or -2:30), two zones that are neither UTC nor a
billing zone under test, so a result that leaks either zone fails a test.
"""

from __future__ import annotations

import pprint
from collections import Counter
from typing import Any, Iterable

import pytest

from shared_logic.settings import load_settings

JVM_TIMEZONE = "Pacific/Chatham"
SESSION_TIMEZONE = "America/St_Johns"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):
    """A local Spark session with Delta Lake, stopped at the end of the test run."""
    from batch_layer.spark_session import build_spark_session

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    timezone_option = f"-Duser.timezone={JVM_TIMEZONE}"
    session = build_spark_session(
        load_settings({}).replace(spark_master="local[2]", spark_driver_memory="1g"),
        "adclick-tests",
        extra_conf={
            "spark.driver.extraJavaOptions": timezone_option,
            "spark.executor.extraJavaOptions": timezone_option,
            "spark.sql.session.timeZone": SESSION_TIMEZONE,
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.databricks.delta.snapshotPartitions": "2",
            # Adaptive execution splits every shuffle into its own job, which
            # only adds overhead on the few rows of a test.
            "spark.sql.adaptive.enabled": "false",
        },
    )
    yield session
    session.stop()


def _as_dicts(rows: Iterable[Any]) -> list[dict]:
    result = []
    for row in rows:
        result.append(row.asDict(recursive=True) if hasattr(row, "asDict") else dict(row))
    return result


def _hashable(row: dict) -> tuple:
    return tuple(sorted((key, repr(value)) for key, value in row.items()))


def assert_rows_equal(actual: Any, expected: Iterable[dict], columns: list[str] | None = None) -> None:
    """Assert that a DataFrame (or rows) contains exactly ``expected``, in any order.

    With ``columns``, only those columns are compared. The failure message
    shows both sides, sorted, and the rows only one side has.
    """
    actual_rows = _as_dicts(actual.collect() if hasattr(actual, "collect") else actual)
    expected_rows = [dict(row) for row in expected]
    if columns is not None:
        actual_rows = [{key: row[key] for key in columns} for row in actual_rows]
        expected_rows = [{key: row[key] for key in columns} for row in expected_rows]
    actual_count = Counter(_hashable(row) for row in actual_rows)
    expected_count = Counter(_hashable(row) for row in expected_rows)
    if actual_count == expected_count:
        return
    only_actual = actual_count - expected_count
    only_expected = expected_count - actual_count
    raise AssertionError(
        "rows differ (order ignored)\n"
        f"expected {len(expected_rows)} rows:\n{pprint.pformat(sorted(expected_count.elements()))}\n"
        f"actual {len(actual_rows)} rows:\n{pprint.pformat(sorted(actual_count.elements()))}\n"
        f"only in expected:\n{pprint.pformat(sorted(only_expected.elements()))}\n"
        f"only in actual:\n{pprint.pformat(sorted(only_actual.elements()))}"
    )
