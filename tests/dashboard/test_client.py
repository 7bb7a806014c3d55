"""The serving API client's errors, against small local HTTP servers, and the dashboard command line."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dashboard.api import ServingRejected, ServingUnavailable, get_json, probe_service
from dashboard.commands import streamlit_command
from infra.cli import build_parser
from shared_logic.settings import Settings


def serve_fixed(status: int, body: bytes):
    """Start a server on 127.0.0.1 that returns ``status`` and ``body`` for every GET."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def fixed_server(request):
    server = serve_fixed(*request.param)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("fixed_server", [(500, b'{"detail": "boom"}')], indirect=True)
def test_server_error_is_unavailable(fixed_server) -> None:
    with pytest.raises(ServingUnavailable, match="failed with HTTP 500"):
        get_json(fixed_server, "/v1/status", None, 5)


@pytest.mark.parametrize("fixed_server", [(200, b"<html>not json</html>")], indirect=True)
def test_body_not_json_is_unavailable(fixed_server) -> None:
    with pytest.raises(ServingUnavailable, match="is not JSON"):
        get_json(fixed_server, "/v1/status", None, 5)


@pytest.mark.parametrize("fixed_server", [(400, b'{"error": "invalid_parameter", "message": "minutes=0"}')],
                         indirect=True)
def test_client_error_carries_api_message(fixed_server) -> None:
    with pytest.raises(ServingRejected, match="minutes=0") as raised:
        get_json(fixed_server, "/v1/top", {"minutes": 0}, 5)
    assert raised.value.status_code == 400


@pytest.mark.parametrize("fixed_server", [(503, b'{"status": "unavailable"}')], indirect=True)
def test_probe_reports_unhealthy_status(fixed_server) -> None:
    probe = probe_service.__wrapped__("collector", f"{fixed_server}/readyz", 5)

    assert probe.responds is False
    assert probe.detail == "HTTP 503"


def test_dashboard_command_binds_loopback() -> None:
    settings = Settings(dashboard_port=8999)

    command = streamlit_command(settings)

    assert command[1:4] == ["-m", "streamlit", "run"]
    assert command[4].endswith("dashboard/app.py")
    options = dict(zip(command[5::2], command[6::2]))
    assert options["--server.address"] == "127.0.0.1"
    assert options["--server.port"] == "8999"
    assert options["--server.headless"] == "true"
    assert options["--browser.gatherUsageStats"] == "false"


def test_cli_registers_dashboard_command() -> None:
    args = build_parser().parse_args(["dashboard", "--port", "9001", "--serving-port", "9002"])

    assert args.command == "dashboard"
    assert args.port == 9001
    assert args.serving_port == 9002
