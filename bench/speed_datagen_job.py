"""The speed job's SQL on Flink's datagen source with blackhole sinks: the engine's ceiling.

Run with the PyFlink interpreter: ``python -m bench.speed_datagen_job ROWS
SKEWED`` with settings in ``ADCLICK_*`` variables. It prints one JSON line
with the job's net runtime. No Kafka and no JSON parsing take part.
"""

from __future__ import annotations

import json
import sys

from shared_logic.heartbeats import HEARTBEAT_FIELD
from shared_logic.settings import load_settings
from speed_layer.job import job_configuration
from speed_layer.statements import SOURCE_TABLE, build_statements, interval_sql, watermark_time_sql

EVENT_TIME_START_MS = 1_767_268_800_000  # 2026-01-01T00:00:00Z
UNTHROTTLED_ROWS_PER_S = 1_000_000_000


def datagen_source_ddl(rows: int, skewed: bool, watermark_delay_ms: int) -> str:
    # Unique click ids from a sequence, 1,000 clicks per second of event time.
    # Skewed traffic sends 9 of 10 clicks to one ad.
    ad_id = ("CASE WHEN MOD(seq, 10) < 9 THEN 'ad-hot' ELSE CONCAT('ad-', CAST(MOD(seq, 1000) AS STRING)) END"
             if skewed else "CONCAT('ad-', CAST(MOD(seq, 1000) AS STRING))")
    return f"""
    CREATE TABLE {SOURCE_TABLE} (
      seq BIGINT,
      click_id AS CAST(seq AS STRING),
      ad_id AS {ad_id},
      user_id AS 'user',
      `timestamp` AS '',
      event_time_ms AS {EVENT_TIME_START_MS} + seq,
      click_id_source AS 'client',
      attributes AS '{{}}',
      received_at_ms AS {EVENT_TIME_START_MS} + seq,
      {HEARTBEAT_FIELD} AS CAST(NULL AS BOOLEAN),
      event_time AS TO_TIMESTAMP_LTZ({EVENT_TIME_START_MS} + seq, 3),
      proc_time AS PROCTIME(),
      WATERMARK FOR event_time AS {watermark_time_sql()} - {interval_sql(watermark_delay_ms)}
    ) WITH (
      'connector' = 'datagen',
      -- The connector throttles to 10,000 rows/s unless told otherwise.
      'rows-per-second' = '{UNTHROTTLED_ROWS_PER_S}',
      'fields.seq.kind' = 'sequence',
      'fields.seq.start' = '0',
      'fields.seq.end' = '{rows - 1}'
    )"""


def blackhole(ddl: str) -> str:
    return ddl.split(") WITH (")[0] + ") WITH ('connector' = 'blackhole')"


def main() -> int:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    rows, skewed = int(sys.argv[1]), sys.argv[2] == "skewed"
    settings = load_settings()
    table_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    for key, value in job_configuration(settings, None).items():
        table_env.get_config().set(key, value)

    statements = build_statements(settings)
    delay_ms = (settings.out_of_orderness_s + settings.allowed_lateness_s) * 1000
    table_env.execute_sql(datagen_source_ddl(rows, skewed, delay_ms))
    for ddl in statements.ddl[1:4]:
        table_env.execute_sql(blackhole(ddl))
    for ddl in statements.ddl[4:]:
        table_env.execute_sql(ddl)
    statement_set = table_env.create_statement_set()
    for insert in statements.inserts:
        statement_set.add_insert_sql(insert)
    result = statement_set.execute().get_job_client().get_job_execution_result().result()
    print(json.dumps({"rows": rows, "net_runtime_ms": result.get_net_runtime()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
