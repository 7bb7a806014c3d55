"""``adclick land`` and ``adclick recompute``: the batch layer's Spark jobs in local mode."""

from __future__ import annotations

import argparse

from batch_layer import land_job, recompute_job


def register(subparsers: argparse._SubParsersAction) -> None:
    land = subparsers.add_parser(
        "land", help="land the clicks topic in the bronze Delta table raw_clicks",
        description="Append every record of the clicks topic to raw_clicks, exactly once.",
    )
    land_job.add_arguments(land)
    land.set_defaults(handler=land_job.run)

    recompute = subparsers.add_parser(
        "recompute", help="recompute billing days into the silver and gold Delta tables",
        description="Rebuild clicks_deduped and the billing_clicks_* tables of billing days "
                    "from raw_clicks, and record each run in batch_runs.",
    )
    recompute_job.add_arguments(recompute)
    recompute.set_defaults(handler=recompute_job.run)
