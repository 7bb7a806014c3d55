"""Typed settings for every process of the platform.

Each field can be overridden by an environment variable named
``ADCLICK_`` plus the field name in upper case, for example
``ADCLICK_KAFKA_BOOTSTRAP_SERVERS=b1:9092,b2:9092``. Durations carry their
unit in the name (``_s``, ``_ms``) so both layers read the same values.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "ADCLICK_"


class SettingsError(ValueError):
    """An environment override that cannot be used."""


@dataclass(frozen=True)
class Settings:
    # Where runtime state (broker data, checkpoints, Delta tables, DuckDB) lives.
    data_dir: Path = PROJECT_ROOT / "var"
    jars_dir: Path = PROJECT_ROOT / "build" / "jars"
    java_home: Path = Path("/usr/lib/jvm/java-17-openjdk-amd64")

    # Kafka. A remote multi-broker cluster only needs kafka_bootstrap_servers.
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    kafka_heap_mb: int = 512
    # Upper bound a producer transaction may stay open; Flink's exactly-once
    # sink keeps a transaction open for one checkpoint interval plus any outage.
    kafka_transaction_max_timeout_ms: int = 3_600_000
    topic_clicks: str = "clicks"
    topic_clicks_rejected: str = "clicks-rejected"
    topic_clicks_late: str = "clicks-late"
    topic_click_counts: str = "click-counts"
    topic_late_counts: str = "late-click-counts"
    clicks_partitions: int = 6
    side_topic_partitions: int = 3
    kafka_replication_factor: int = 1

    # Click collector.
    collector_host: str = "127.0.0.1"
    collector_port: int = 8080
    collector_max_body_bytes: int = 1_048_576
    collector_max_batch_clicks: int = 1_000
    collector_kafka_timeout_s: float = 10.0
    # Server processes; each has its own Kafka producer.
    collector_workers: int = 2
    # How often each collector process writes its acknowledged event time to
    # every clicks partition as a watermark heartbeat; 0 turns heartbeats off.
    collector_heartbeat_interval_s: float = 1.0

    # Validation limits.
    max_id_length: int = 128
    max_future_skew_s: int = 300
    max_attributes: int = 16

    # Lateness model, read by both the speed and the batch layer.
    out_of_orderness_s: int = 5
    allowed_lateness_s: int = 300
    # Fallback for partitions that get neither clicks nor collector
    # heartbeats; see "Idleness" in speed_layer/README.md.
    source_idle_timeout_s: int = 60
    dedup_ttl_s: int = 86_400

    # Speed layer. A read_committed reader sees a count only after the
    # checkpoint that commits it, so a count's freshness is about
    # flink_early_fire_s + checkpoint_interval_s plus the checkpoint's own
    # duration (see speed_layer/README.md).
    checkpoint_interval_s: int = 2
    state_backend: str = "hashmap"
    flink_parallelism: int = 2
    flink_early_fire_s: int = 1
    # Interpreter of the PyFlink environment that runs speed_layer/job.py.
    flink_python: Path = PROJECT_ROOT / ".venv-flink" / "bin" / "python"
    # "minicluster" runs the job in an embedded MiniCluster, "session" submits
    # it with `flink run -py` to the session cluster at flink_rest_address.
    speed_deployment: str = "minicluster"
    flink_rest_address: str = "127.0.0.1:8081"
    # Names the job, its consumer group, its checkpoint folder and the
    # prefix of its Kafka transactional ids; two jobs must not share it.
    speed_job_name: str = "adclick-speed"
    # Checkpoint storage URI; empty means file:// under data_dir/flink/checkpoints.
    speed_checkpoint_uri: str = ""
    # Kafka transaction timeout of the exactly-once sinks. It must exceed the
    # checkpoint interval plus the longest outage the job should survive, and
    # the broker caps it at kafka_transaction_max_timeout_ms.
    speed_transaction_timeout_ms: int = 900_000
    # Heap of the JVM that runs the MiniCluster.
    speed_jvm_heap_mb: int = 1536

    # Billing day boundaries; both layers and the serving layer use this zone.
    billing_timezone: str = "UTC"

    # Batch layer (Spark and Delta Lake). Delta tables live under path("delta").
    spark_master: str = "local[2]"
    spark_driver_memory: str = "1g"
    spark_executor_memory: str = "1g"
    spark_shuffle_partitions: int = 4
    # Upper bound of Kafka records one landing micro-batch reads; 0 means no bound.
    landing_max_offsets_per_trigger: int = 100_000
    landing_trigger_interval_s: int = 10
    # A 'running' batch_runs row older than this is taken as a crashed run,
    # so a new run for its day may start.
    recompute_lease_s: int = 3_600

    # Serving API and dashboard.
    serving_host: str = "127.0.0.1"
    serving_port: int = 8000
    dashboard_port: int = 8501
    airflow_port: int = 8793

    # Dashboard: the address Streamlit listens on, how often the Live page
    # reloads its data, and how long one request to the serving API or one
    # health probe of a service may take before it counts as timed out.
    dashboard_host: str = "127.0.0.1"
    dashboard_refresh_interval_s: float = 5.0
    dashboard_request_timeout_s: float = 5.0

    # Serving layer: how often the ingest thread polls Kafka and the Delta
    # log, the query limits the API enforces, and when a reconciliation row
    # is flagged (both thresholds must be exceeded; 0 flags any difference).
    serving_kafka_poll_timeout_ms: int = 500
    serving_kafka_max_poll_records: int = 5_000
    serving_delta_poll_interval_s: float = 5.0
    serving_lag_refresh_interval_s: float = 10.0
    serving_max_series_buckets: int = 20_160
    serving_max_billing_days: int = 92
    serving_max_top_minutes: int = 1_440
    serving_max_top_limit: int = 1_000
    reconciliation_threshold_clicks: int = 0
    reconciliation_threshold_pct: float = 0.0

    # Orchestration (Airflow). The nightly billing run of a day waits until
    # raw landing has passed the day's end plus airflow_day_end_grace_s.
    airflow_day_end_grace_s: int = 900
    airflow_landing_interval_s: int = 300
    airflow_billing_max_active_runs: int = 2
    airflow_task_retries: int = 3
    # Retries wait airflow_retry_delay_s, doubling up to airflow_max_retry_delay_s.
    airflow_retry_delay_s: int = 60
    airflow_max_retry_delay_s: int = 1_800
    # Execution timeouts: one Spark job, one check or report task, and the
    # whole wait for landing (the sensor fails after it).
    airflow_spark_timeout_s: int = 3_600
    airflow_check_timeout_s: int = 600
    airflow_landing_wait_timeout_s: int = 21_600
    airflow_landing_poke_interval_s: int = 300
    # First billing day (YYYY-MM-DD, billing time zone) of the nightly billing
    # DAG; with catchup, every day from here on gets a run.
    airflow_first_billing_day: str = "2026-01-01"

    @property
    def billing_zone(self) -> ZoneInfo:
        return ZoneInfo(self.billing_timezone)

    @property
    def delta_dir(self) -> Path:
        return self.path("delta")

    @property
    def landing_checkpoint_dir(self) -> Path:
        return self.path("checkpoints", "landing")

    def path(self, *parts: str) -> Path:
        """Return a path under the data directory."""
        return Path(self.data_dir, *parts)

    @property
    def serving_duckdb_path(self) -> Path:
        """The serving layer's DuckDB database file, owned by ``adclick serve``."""
        return self.path("serving", "adclick.duckdb")

    @property
    def reports_dir(self) -> Path:
        """Where reconciliation reports (CSV and HTML) are written."""
        return self.path("reports")

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def to_environ(self) -> dict[str, str]:
        """Return these settings as ``ADCLICK_*`` variables, for child processes."""
        return {ENV_PREFIX + item.name.upper(): str(getattr(self, item.name)) for item in fields(self)}


def _convert(name: str, annotation: str, raw: str):
    try:
        if annotation == "int":
            return int(raw)
        if annotation == "float":
            return float(raw)
        if annotation == "Path":
            return Path(raw)
    except ValueError as exc:
        raise SettingsError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {annotation}; "
            f"set it to a number such as 10"
        ) from exc
    return raw


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from defaults and ``ADCLICK_*`` environment overrides."""
    environ = os.environ if environ is None else environ
    overrides = {}
    for item in fields(Settings):
        raw = environ.get(ENV_PREFIX + item.name.upper())
        if raw is not None:
            overrides[item.name] = _convert(item.name, str(item.type), raw)
    settings = Settings(**overrides)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    try:
        settings.billing_zone
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(
            f"billing_timezone {settings.billing_timezone!r} is not an IANA time zone; "
            "use a name such as 'UTC' or 'America/New_York'"
        ) from exc
    if settings.state_backend not in ("hashmap", "rocksdb"):
        raise SettingsError(
            f"state_backend {settings.state_backend!r} is not supported; use 'hashmap' or 'rocksdb'"
        )
    for name in ("out_of_orderness_s", "allowed_lateness_s", "dedup_ttl_s", "checkpoint_interval_s"):
        if getattr(settings, name) < 0:
            raise SettingsError(f"{name} must not be negative, got {getattr(settings, name)}")
    try:
        date.fromisoformat(settings.airflow_first_billing_day)
    except ValueError as exc:
        raise SettingsError(
            f"airflow_first_billing_day {settings.airflow_first_billing_day!r} is not a date; "
            "use the form YYYY-MM-DD"
        ) from exc
    if settings.speed_deployment not in ("minicluster", "session"):
        raise SettingsError(
            f"speed_deployment {settings.speed_deployment!r} is not supported; use 'minicluster' or 'session'"
        )
    if not (settings.checkpoint_interval_s * 1000 < settings.speed_transaction_timeout_ms
            <= settings.kafka_transaction_max_timeout_ms):
        raise SettingsError(
            f"speed_transaction_timeout_ms={settings.speed_transaction_timeout_ms} must be larger than "
            f"the checkpoint interval ({settings.checkpoint_interval_s * 1000} ms) and at most "
            f"kafka_transaction_max_timeout_ms={settings.kafka_transaction_max_timeout_ms}"
        )
    if settings.dedup_ttl_s < settings.allowed_lateness_s + settings.out_of_orderness_s:
        raise SettingsError(
            "dedup_ttl_s must be at least allowed_lateness_s + out_of_orderness_s, "
            "or a duplicate could outlive its click's deduplication state"
        )
