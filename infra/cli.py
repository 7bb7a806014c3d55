"""The ``adclick`` command: one subcommand for each process of the platform.

Each layer registers its own subcommands through a ``register(subparsers)``
function in the module listed in COMMAND_MODULES, so this file only wires them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from shared_logic.settings import SettingsError, load_settings

COMMAND_MODULES = (
    "infra.commands",
    "collector.commands",
    "infra.airflow_commands",
    "traffic.commands",
    "infra.demo",
    "serving_layer.commands",
    "dashboard.commands",
    "batch_layer.commands",
    "speed_layer.commands",
)

logger = logging.getLogger("adclick")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adclick",
        description="Exact, real-time ad click counting for billing. Settings come from "
                    "ADCLICK_* environment variables (see shared_logic/settings.py).",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python logs every connection attempt at INFO and refusals at ERROR.
    logging.getLogger("kafka").setLevel(logging.CRITICAL if args.log_level.upper() != "DEBUG" else logging.DEBUG)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"adclick: invalid setting: {exc}", file=sys.stderr)
        return 2
    return int(args.handler(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
