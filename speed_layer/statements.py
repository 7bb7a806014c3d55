"""The speed layer's Flink SQL, built from settings.

Everything per click runs in the JVM: a Kafka source with per-partition
watermarks, ROW_NUMBER deduplication, a lateness filter, two window
aggregates and a group aggregate that merges them, and three exactly-once
Kafka sinks.

Watermark: Flink's watermark on ``event_time`` is declared as the nominal
watermark minus the allowed lateness (see shared_logic/lateness.py). So a
one-minute event-time window fires exactly when the minute becomes final, and
``CURRENT_WATERMARK(event_time)`` is directly the closing watermark that the
lateness filter compares with.

Provisional counts come from a processing-time tumbling window of
``flink_early_fire_s`` seconds that emits, per (ad, minute), how many clicks
arrived in that interval. Final counts come from the event-time minute window.
Both go into one group aggregate keyed by (ad_id, window_start_ms), so every
row of one key leaves one operator in order: clicks is the larger of the sum of
the provisional deltas and the final count, and is_final stays true once set.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared_logic.heartbeats import HEARTBEAT_FIELD, not_heartbeat_sql
from shared_logic.lateness import minute_start_sql, window_closed_sql
from shared_logic.settings import Settings
from shared_logic.time_buckets import MINUTE_MS

SOURCE_TABLE = "clicks_source"
COUNTS_TABLE = "click_counts_sink"
LATE_CLICKS_TABLE = "clicks_late_sink"
LATE_COUNTS_TABLE = "late_counts_sink"


@dataclass(frozen=True)
class SpeedStatements:
    """DDL to run first, then the INSERTs that form one statement set."""

    ddl: list[str]
    inserts: list[str]


def interval_sql(milliseconds: int) -> str:
    """Return an INTERVAL DAY TO SECOND literal; plain SECOND intervals stop at 99 s."""
    seconds, millis = divmod(milliseconds, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"


def epoch_ms_sql(timestamp_ltz_sql: str) -> str:
    """SQL: the epoch milliseconds of a TIMESTAMP_LTZ(3) expression (session time zone UTC).

    Flink 2.2 rejects CAST(TIMESTAMP_LTZ AS BIGINT), and TIMESTAMPDIFF returns
    an INT, so whole days and the milliseconds within the day are added up.
    """
    local = f"CAST({timestamp_ltz_sql} AS TIMESTAMP(3))"
    return (f"(CAST(TIMESTAMPDIFF(DAY, TIMESTAMP '1970-01-01 00:00:00', {local}) AS BIGINT) * 86400000"
            f" + TIMESTAMPDIFF(MILLISECOND, CAST(CAST({local} AS DATE) AS TIMESTAMP(3)), {local}))")


def _kafka_client_options(settings: Settings) -> str:
    return f"'properties.bootstrap.servers' = '{settings.kafka_bootstrap_servers}'"


def _exactly_once_options(settings: Settings, sink_name: str) -> str:
    # Transactional ids must be unique per sink and stable across restarts,
    # so a restarted job aborts the transactions its predecessor left open.
    return f"""
      'sink.delivery-guarantee' = 'exactly-once',
      'sink.transactional-id-prefix' = '{settings.speed_job_name}-{sink_name}',
      'properties.transaction.timeout.ms' = '{settings.speed_transaction_timeout_ms}'"""


def watermark_time_sql() -> str:
    """SQL: the time a record adds to its partition's watermark, its event time capped at its receipt.

    A click stamped in the future (up to max_future_skew_s) then moves the
    watermark only as far as the collector's clock when it was received, so it
    cannot make other clicks late. Heartbeats carry no receipt time.
    """
    return "TO_TIMESTAMP_LTZ(LEAST(event_time_ms, COALESCE(received_at_ms, event_time_ms)), 3)"


def source_ddl(settings: Settings) -> str:
    """The clicks topic as a table with event time and the delayed watermark."""
    watermark_delay_ms = (settings.out_of_orderness_s + settings.allowed_lateness_s) * 1000
    # Heartbeat records (shared_logic/heartbeats.py) are read like clicks, so
    # they move their partition's watermark. The deduplication view drops them.
    # NOTE: Flink marks a partition idle after idle-timeout without a record,
    # even when it still has unread records. The timeout is only a fallback
    # for partitions without heartbeats, so it is long (see "Heartbeats and
    # idleness" in speed_layer/README.md).
    return f"""
    CREATE TABLE {SOURCE_TABLE} (
      click_id STRING,
      ad_id STRING,
      user_id STRING,
      `timestamp` STRING,
      event_time_ms BIGINT,
      click_id_source STRING,
      attributes STRING,
      received_at_ms BIGINT,
      {HEARTBEAT_FIELD} BOOLEAN,
      event_time AS TO_TIMESTAMP_LTZ(event_time_ms, 3),
      proc_time AS PROCTIME(),
      WATERMARK FOR event_time AS {watermark_time_sql()} - {interval_sql(watermark_delay_ms)}
    ) WITH (
      'connector' = 'kafka',
      'topic' = '{settings.topic_clicks}',
      {_kafka_client_options(settings)},
      'properties.group.id' = '{settings.speed_job_name}',
      'properties.isolation.level' = 'read_committed',
      'properties.auto.offset.reset' = 'earliest',
      'scan.startup.mode' = 'group-offsets',
      'scan.watermark.idle-timeout' = '{settings.source_idle_timeout_s} s',
      'format' = 'json'
    )"""


def counts_sink_ddl(settings: Settings) -> str:
    return f"""
    CREATE TABLE {COUNTS_TABLE} (
      ad_id STRING,
      window_start_ms BIGINT,
      window_end_ms BIGINT,
      clicks BIGINT,
      is_final BOOLEAN,
      computed_at_ms BIGINT,
      PRIMARY KEY (ad_id, window_start_ms) NOT ENFORCED
    ) WITH (
      'connector' = 'upsert-kafka',
      'topic' = '{settings.topic_click_counts}',
      {_kafka_client_options(settings)},
      'key.format' = 'json',
      'value.format' = 'json',{_exactly_once_options(settings, "counts")}
    )"""


def late_counts_sink_ddl(settings: Settings) -> str:
    return f"""
    CREATE TABLE {LATE_COUNTS_TABLE} (
      ad_id STRING,
      window_start_ms BIGINT,
      window_end_ms BIGINT,
      late_clicks BIGINT,
      computed_at_ms BIGINT,
      PRIMARY KEY (ad_id, window_start_ms) NOT ENFORCED
    ) WITH (
      'connector' = 'upsert-kafka',
      'topic' = '{settings.topic_late_counts}',
      {_kafka_client_options(settings)},
      'key.format' = 'json',
      'value.format' = 'json',{_exactly_once_options(settings, "late-counts")}
    )"""


def late_clicks_sink_ddl(settings: Settings) -> str:
    # The value is written as raw JSON text so the click's attributes keep
    # their JSON types; the key is the ad id, as in the clicks topic.
    return f"""
    CREATE TABLE {LATE_CLICKS_TABLE} (
      ad_id STRING,
      payload STRING
    ) WITH (
      'connector' = 'kafka',
      'topic' = '{settings.topic_clicks_late}',
      {_kafka_client_options(settings)},
      'key.format' = 'raw',
      'key.fields' = 'ad_id',
      'value.format' = 'raw',
      'value.fields-include' = 'EXCEPT_KEY',{_exactly_once_options(settings, "late-clicks")}
    )"""


def view_ddl(settings: Settings) -> list[str]:
    """The pipeline's views: deduplicate, then split on-time from too-late clicks."""
    minute_start = minute_start_sql("event_time_ms")
    closed = window_closed_sql("event_time_ms", "CURRENT_WATERMARK(event_time)")
    # Every lateness filter runs chained to the one deduplication operator
    # (see the block reuse option in speed_layer/job.py), so all filters see
    # the same watermark for a given click, and it takes exactly one way.
    return [
        f"""
        CREATE TEMPORARY VIEW deduplicated_clicks AS
        SELECT click_id, ad_id, user_id, `timestamp`, event_time_ms, click_id_source,
               attributes, received_at_ms, event_time, proc_time
        FROM (
          SELECT *, ROW_NUMBER() OVER (PARTITION BY click_id ORDER BY proc_time) AS arrival_rank
          FROM {SOURCE_TABLE}
          WHERE {not_heartbeat_sql()}
        )
        WHERE arrival_rank = 1""",
        f"""
        CREATE TEMPORARY VIEW on_time_clicks AS
        SELECT ad_id, event_time_ms, {minute_start} AS window_start_ms, event_time, proc_time
        FROM deduplicated_clicks
        WHERE NOT {closed}""",
        f"""
        CREATE TEMPORARY VIEW too_late_clicks AS
        SELECT *, {minute_start} AS window_start_ms,
               {epoch_ms_sql("CURRENT_WATERMARK(event_time)")} + {settings.allowed_lateness_s * 1000}
                 AS watermark_ms
        FROM deduplicated_clicks
        WHERE {closed}""",
    ]


def counts_insert(settings: Settings) -> str:
    """Provisional and final per-minute counts, merged per (ad_id, window_start_ms)."""
    # A hot ad's clicks are spread over several window keys by a bucket taken
    # from the event time, so one ad does not load one subtask; the group
    # aggregate adds the buckets up again.
    buckets = max(1, settings.flink_parallelism) * 4
    early_fire = interval_sql(settings.flink_early_fire_s * 1000)
    return f"""
    INSERT INTO {COUNTS_TABLE}
    SELECT ad_id, window_start_ms, window_start_ms + {MINUTE_MS} AS window_end_ms,
           GREATEST(SUM(arrived_clicks), COALESCE(MAX(final_clicks), 0)) AS clicks,
           MAX(final_clicks) IS NOT NULL AS is_final,
           {epoch_ms_sql("CURRENT_TIMESTAMP")} AS computed_at_ms
    FROM (
      SELECT ad_id, window_start_ms, COUNT(*) AS arrived_clicks, CAST(NULL AS BIGINT) AS final_clicks
      FROM TABLE(TUMBLE(TABLE on_time_clicks, DESCRIPTOR(proc_time), {early_fire}))
      GROUP BY window_start, window_end, ad_id, window_start_ms, MOD(event_time_ms, {buckets})
      UNION ALL
      SELECT ad_id, window_start_ms, CAST(0 AS BIGINT) AS arrived_clicks, COUNT(*) AS final_clicks
      FROM TABLE(TUMBLE(TABLE on_time_clicks, DESCRIPTOR(event_time), INTERVAL '1' MINUTE))
      GROUP BY window_start, window_end, ad_id, window_start_ms
    )
    GROUP BY ad_id, window_start_ms"""


def late_clicks_insert() -> str:
    """Every click beyond the allowed lateness, with its lateness and the watermark."""
    return f"""
    INSERT INTO {LATE_CLICKS_TABLE}
    SELECT ad_id, JSON_OBJECT(
      KEY 'click_id' VALUE click_id,
      KEY 'ad_id' VALUE ad_id,
      KEY 'user_id' VALUE user_id,
      KEY 'timestamp' VALUE `timestamp`,
      KEY 'event_time_ms' VALUE event_time_ms,
      KEY 'click_id_source' VALUE click_id_source,
      KEY 'attributes' VALUE JSON(COALESCE(attributes, '{{}}')),
      KEY 'received_at_ms' VALUE received_at_ms,
      KEY 'lateness_ms' VALUE watermark_ms - event_time_ms,
      KEY 'watermark_ms' VALUE watermark_ms)
    FROM too_late_clicks"""


def late_counts_insert() -> str:
    return f"""
    INSERT INTO {LATE_COUNTS_TABLE}
    SELECT ad_id, window_start_ms, window_start_ms + {MINUTE_MS} AS window_end_ms,
           COUNT(*) AS late_clicks, {epoch_ms_sql("CURRENT_TIMESTAMP")} AS computed_at_ms
    FROM too_late_clicks
    GROUP BY ad_id, window_start_ms"""


def build_statements(settings: Settings) -> SpeedStatements:
    ddl = [source_ddl(settings), counts_sink_ddl(settings), late_counts_sink_ddl(settings),
           late_clicks_sink_ddl(settings), *view_ddl(settings)]
    inserts = [counts_insert(settings), late_clicks_insert(), late_counts_insert()]
    return SpeedStatements(ddl, inserts)
