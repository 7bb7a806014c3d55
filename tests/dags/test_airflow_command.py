"""``adclick airflow`` as a user runs it: start, log in to the API, stop with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import requests

from shared_logic.settings import PROJECT_ROOT
from tests.conftest import free_port
from tests.processes import ADCLICK


def test_airflow_command_serves_api_until_sigterm(base_settings, tmp_path):
    settings = base_settings.replace(data_dir=tmp_path, airflow_port=free_port())
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    # Unbuffered, so the command's printed lines arrive while it runs.
    environment["PYTHONUNBUFFERED"] = "1"
    command = subprocess.Popen([ADCLICK, "airflow"], env={**environment, **settings.to_environ()},
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    try:
        # The command prints the UI address once the API server is healthy.
        for line in command.stdout:
            output.append(line)
            if line.startswith("Airflow UI:"):
                break
        base_url = f"http://127.0.0.1:{settings.airflow_port}"
        assert f"Airflow UI: {base_url}" in "".join(output), "".join(output)

        password_file = tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"
        password = json.loads(password_file.read_text())["admin"]
        login = requests.post(f"{base_url}/auth/token", json={"username": "admin", "password": password},
                              timeout=30)
        assert login.status_code in (200, 201), login.text
        token = login.json()["access_token"]
        dags = requests.get(f"{base_url}/api/v2/dags", headers={"Authorization": f"Bearer {token}"},
                            timeout=30)
        assert dags.status_code == 200, dags.text
        wrong_login = requests.post(f"{base_url}/auth/token", json={"username": "admin", "password": "wrong"},
                                    timeout=30)
        assert wrong_login.status_code == 401, wrong_login.text
    finally:
        command.send_signal(signal.SIGTERM)
        remaining_output, _ = command.communicate(timeout=240)
        output.append(remaining_output)

    assert command.returncode == 0, "".join(output)
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert not (tmp_path / "airflow" / "run" / f"{component}.pid").exists(), component
