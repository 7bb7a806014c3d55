"""Spark job: recompute billing days into silver and gold Delta tables.

Run locally with ``adclick recompute --day 2026-12-04`` (or ``--dirty``), or on
a cluster with ``spark-submit --master spark://HOST:7077 --conf ...
batch_layer/recompute_job.py --day 2026-12-04``, taking the ``--conf`` pairs
from ``batch_layer.spark_session.spark_submit_conf``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date

from batch_layer.job_entry import run_job
from shared_logic.settings import Settings

logger = logging.getLogger(__name__)

# Exit code when another run has claimed the day, so a scheduler can retry later.
EXIT_DAY_CLAIMED = 3


def _billing_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD, e.g. 2026-12-04") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--day", type=_billing_day, action="append",
                        help="billing day to recompute, YYYY-MM-DD in billing_timezone; repeat it to "
                             "recompute several days in one Spark session")
    target.add_argument("--dirty", action="store_true",
                        help="recompute every closed billing day that received raw clicks "
                             "after its last successful run")


def run(args: argparse.Namespace, settings: Settings) -> int:
    # PySpark is imported here so that `adclick --help` does not load it.
    from batch_layer.recompute import recompute_day, recompute_dirty_days
    from batch_layer.runs import DayAlreadyClaimed
    from batch_layer.spark_session import build_spark_session

    spark = build_spark_session(settings, "adclick-recompute")
    try:
        if args.dirty:
            results = recompute_dirty_days(spark, settings)
            logger.info("recomputed %d dirty billing day(s): %s", len(results),
                        ", ".join(f"{r.billing_day} ({r.run_id})" for r in results) or "none")
        else:
            for day in args.day:
                recompute_day(spark, settings, day)
    except DayAlreadyClaimed as exc:
        logger.error("%s", exc)
        return EXIT_DAY_CLAIMED
    finally:
        spark.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
