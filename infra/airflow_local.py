"""A local Airflow for the project's DAGs: api-server, scheduler, DAG processor, triggerer.

Everything lives under ``settings.path("airflow")`` (an ignored folder): the
SQLite metadata database, logs and PID files. The API server listens on
127.0.0.1:airflow_port and also serves the task execution API, which the
LocalExecutor's workers call. The ``spark_default`` connection is an
``AIRFLOW_CONN_SPARK_DEFAULT`` variable built from the settings, so no task
looks it up in the database.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dags.common.config import spark_connection_json
from infra.processes import read_pid, spawn, stop_pid
from shared_logic.settings import PROJECT_ROOT, Settings

logger = logging.getLogger(__name__)

DAGS_FOLDER = PROJECT_ROOT / "dags"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"
LOCAL_PARALLELISM = 4
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


class AirflowStartError(RuntimeError):
    """A local Airflow component did not start or did not become healthy."""


def airflow_environment(settings: Settings, home: Path | None = None,
                        use_job_schedule: bool = True) -> dict[str, str]:
    """Return the environment variables that configure Airflow for ``settings``.

    ``use_job_schedule=False`` stops the scheduler from creating scheduled
    runs, so only manual and backfill runs execute (tests use it).
    """
    home = home or settings.path("airflow")
    base_url = f"http://127.0.0.1:{settings.airflow_port}"
    python_bin = Path(sys.executable).parent
    return {
        **settings.to_environ(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # The LocalExecutor of Airflow 3.1.8 starts `parallelism` worker
        # processes up front (32 by default). Each DAG run here runs one task at
        # a time, and by default one raw_landing run and two billing runs are active.
        "AIRFLOW__CORE__PARALLELISM": str(LOCAL_PARALLELISM),
        # Date-only arguments such as `backfill create --from-date 2024-03-09`
        # then mean local midnight of the billing day.
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": settings.billing_timezone,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(use_job_schedule),
        "AIRFLOW_CONN_SPARK_DEFAULT": spark_connection_json(settings),
        "JAVA_HOME": str(settings.java_home),
        "PATH": f"{python_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }


class LocalAirflow:
    """Start, check and stop the Airflow components of one settings object."""

    def __init__(self, settings: Settings, home: Path | None = None, use_job_schedule: bool = True):
        self.settings = settings
        self.home = home or settings.path("airflow")
        self.environment = {**os.environ, **airflow_environment(settings, self.home, use_job_schedule)}
        self.airflow_bin = str(Path(sys.executable).parent / "airflow")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.airflow_port}"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def _pid_file(self, component: str) -> Path:
        return self.home / "run" / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.home / "run" / f"{component}.log"

    def run_cli(self, *args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess:
        """Run one ``airflow`` CLI command against this installation and return the result."""
        logger.info("airflow %s", " ".join(args))
        return subprocess.run([self.airflow_bin, *args], env=self.environment, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=timeout_s, check=False)

    def migrate(self) -> None:
        """Create or upgrade the metadata database."""
        self.home.mkdir(parents=True, exist_ok=True)
        result = self.run_cli("db", "migrate")
        if result.returncode != 0:
            raise AirflowStartError(f"`airflow db migrate` failed in {self.home}: {result.stderr[-2000:]}")

    def start(self, timeout_s: float = 120.0) -> None:
        """Start every component that is not running and wait until the API server is healthy."""
        (self.home / "run").mkdir(parents=True, exist_ok=True)
        for component in COMPONENTS:
            if read_pid(self._pid_file(component)):
                logger.info("Airflow %s already runs (pid %s)", component, read_pid(self._pid_file(component)))
                continue
            spawn([self.airflow_bin, component], self.log_file(component), self._pid_file(component),
                  env=self.environment, cwd=PROJECT_ROOT)
        self.wait_until_healthy(timeout_s)

    def wait_until_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"{self.base_url}/api/v2/monitor/health"
        while time.monotonic() < deadline:
            for component in COMPONENTS:
                if read_pid(self._pid_file(component)) is None:
                    raise AirflowStartError(
                        f"Airflow {component} exited; see {self.log_file(component)}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        logger.info("Airflow API server healthy at %s", self.base_url)
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        raise AirflowStartError(f"Airflow API server at {url} was not healthy within {timeout_s:.0f} s; "
                                f"see {self.log_file('api-server')}")

    def stop(self) -> None:
        """Stop the components this home started, scheduler first so no new task starts."""
        for component in ("scheduler", "triggerer", "dag-processor", "api-server"):
            pid = read_pid(self._pid_file(component))
            if pid is not None:
                stop_pid(pid, f"airflow {component}")
            self._pid_file(component).unlink(missing_ok=True)
