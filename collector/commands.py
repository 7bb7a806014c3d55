"""``adclick collector``: serve the click collector's HTTP API."""

from __future__ import annotations

import argparse

from shared_logic.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collector", help="serve POST /v1/clicks and write accepted clicks to Kafka",
        description="Serve the click collector on collector_host:collector_port.",
    )
    parser.add_argument("--port", type=int, help="port to listen on (default: collector_port, 8080)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from collector.app import run

    if args.port:
        settings = settings.replace(collector_port=args.port)
    run(settings)
    return 0
