"""``adclick airflow``: run a local Airflow with the project's DAGs until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from shared_logic.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "airflow", help="run a local Airflow (API server, scheduler, DAG processor, triggerer) "
                        "with the DAGs in dags/",
        description="Migrate the metadata database under data_dir/airflow, start Airflow on "
                    "127.0.0.1:airflow_port and stop it on Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--port", type=int, help="API server and UI port (default: airflow_port, 8793)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from infra.airflow_local import DAGS_FOLDER, AirflowStartError, LocalAirflow

    if args.port:
        settings = settings.replace(airflow_port=args.port)
    airflow = LocalAirflow(settings)
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    try:
        airflow.migrate()
        airflow.start()
        print(f"Airflow UI: {airflow.base_url}  (DAGs from {DAGS_FOLDER})")
        print(f"Log in as 'admin' with the password in {airflow.password_file}")
        print(f"Component logs: {airflow.home / 'run'}; stop with Ctrl-C")
        stop_requested.wait()
    except AirflowStartError as exc:
        print(f"adclick airflow: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        airflow.stop()
    return 0

