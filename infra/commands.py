"""``adclick kafka start|stop|status``: the local single-node broker."""

from __future__ import annotations

import argparse
import sys

from infra.kafka_broker import KafkaBrokerError, LocalKafkaBroker, broker_answers
from infra.topics import ensure_topics
from shared_logic.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    kafka = subparsers.add_parser("kafka", help="run the local single-node KRaft Kafka broker",
                                  description="Manage the local Kafka broker on kafka_bootstrap_servers.")
    actions = kafka.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="format storage on first start, start the broker and "
                                             "create the platform's topics; returns once it answers")
    start.set_defaults(handler=_start)
    actions.add_parser("stop", help="shut the broker down cleanly").set_defaults(handler=_stop)
    actions.add_parser("status", help="print whether the broker is running and responds").set_defaults(handler=_status)
    topics = actions.add_parser("topics", help="create missing topics on kafka_bootstrap_servers "
                                               "(also for a remote cluster)")
    topics.set_defaults(handler=_topics)


def _start(_args: argparse.Namespace, settings: Settings) -> int:
    try:
        pid = LocalKafkaBroker(settings).start()
    except KafkaBrokerError as exc:
        print(f"adclick kafka start: {exc}", file=sys.stderr)
        return 1
    created = ensure_topics(settings)
    print(f"Kafka broker running on {settings.kafka_bootstrap_servers} (pid {pid}); "
          f"topics created: {', '.join(created) or 'none, all existed'}")
    return 0


def _stop(_args: argparse.Namespace, settings: Settings) -> int:
    stopped = LocalKafkaBroker(settings).stop()
    print("Kafka broker stopped" if stopped else "Kafka broker was not running")
    return 0


def _status(_args: argparse.Namespace, settings: Settings) -> int:
    broker = LocalKafkaBroker(settings)
    pid = broker.pid()
    answers = broker_answers(settings.kafka_bootstrap_servers)
    print(f"local broker pid: {pid or 'not running'}; {settings.kafka_bootstrap_servers} "
          f"{'answers' if answers else 'does not answer'}")
    return 0 if answers else 1


def _topics(_args: argparse.Namespace, settings: Settings) -> int:
    created = ensure_topics(settings)
    print(f"topics created: {', '.join(created) or 'none, all existed'}")
    return 0
