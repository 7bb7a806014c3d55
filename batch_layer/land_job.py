"""Spark job: land the clicks topic in the bronze Delta table ``raw_clicks``.

Run locally with ``adclick land [--once]`` or on a cluster with
``spark-submit --master spark://HOST:7077 --conf ... batch_layer/land_job.py --once``,
taking the ``--conf`` pairs from ``batch_layer.spark_session.spark_submit_conf``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from batch_layer.job_entry import run_job
from shared_logic.settings import Settings

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true",
                        help="land the records present at start, then stop (default: run until stopped)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    # PySpark is imported here so that `adclick --help` does not load it.
    from batch_layer.landing import run_landing
    from batch_layer.spark_session import build_spark_session

    spark = build_spark_session(settings, "adclick-land")
    try:
        run_landing(spark, settings, once=args.once)
    finally:
        spark.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
