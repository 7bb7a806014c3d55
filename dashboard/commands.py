"""``adclick dashboard``: serve the Streamlit dashboard over the serving API."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from shared_logic.settings import Settings

logger = logging.getLogger(__name__)

APP_PATH = Path(__file__).resolve().parent / "app.py"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard", help="serve the Streamlit dashboard that reads the serving API",
        description="Run the dashboard on dashboard_host:dashboard_port. It reads every number from the "
                    "serving API at serving_host:serving_port and never writes.")
    parser.add_argument("--port", type=int, help="port to listen on (default: dashboard_port, 8501)")
    parser.add_argument("--serving-port", type=int,
                        help="port of the serving API to read from (default: serving_port, 8000)")
    parser.set_defaults(handler=_run)


def streamlit_command(settings: Settings) -> list[str]:
    """Return the ``streamlit run`` command line for ``settings``."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.address", settings.dashboard_host,
        "--server.port", str(settings.dashboard_port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
    ]


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.port:
        settings = settings.replace(dashboard_port=args.port)
    if args.serving_port:
        settings = settings.replace(serving_port=args.serving_port)
    command = streamlit_command(settings)
    # The pages read the serving API's address from these variables.
    environ = {**os.environ, **settings.to_environ()}
    logger.info("starting the dashboard on http://%s:%d, reading the serving API at %s:%d",
                settings.dashboard_host, settings.dashboard_port, settings.serving_host, settings.serving_port)
    # Replace this process, so a signal sent to `adclick dashboard` reaches Streamlit itself.
    os.execve(sys.executable, command, environ)
    return 0  # not reached: execve only returns by raising OSError
