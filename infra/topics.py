"""The platform's Kafka topics, created idempotently from settings."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from shared_logic.settings import Settings

logger = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[NewTopic]:
    side = settings.side_topic_partitions
    replication = settings.kafka_replication_factor
    # Counts are absolute values keyed by (ad_id, window_start), so compaction
    # keeps the latest count of each window.
    compacted = {"cleanup.policy": "compact"}
    return [
        NewTopic(settings.topic_clicks, settings.clicks_partitions, replication),
        NewTopic(settings.topic_clicks_rejected, side, replication),
        NewTopic(settings.topic_clicks_late, side, replication),
        NewTopic(settings.topic_click_counts, side, replication, topic_configs=compacted),
        NewTopic(settings.topic_late_counts, side, replication, topic_configs=compacted),
    ]


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics and return the names of those created."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=30_000)
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics([spec])
                created.append(spec.name)
                logger.info("created topic %s with %d partitions", spec.name, spec.num_partitions)
            except TopicAlreadyExistsError:
                logger.info("topic %s already exists", spec.name)
        return created
    finally:
        admin.close()
