"""The ``main`` shared by the Spark job files that spark-submit runs."""

from __future__ import annotations

import argparse
import logging
from typing import Callable

from shared_logic.settings import Settings, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_job(description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
            run: Callable[[argparse.Namespace, Settings], int], argv: list[str] | None) -> int:
    """Parse ``argv``, set up logging and settings, and return the exit code of ``run``."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    # force: under spark-submit, PySpark may have configured the root logger already.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)
    return run(args, load_settings())
