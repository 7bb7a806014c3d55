"""Every page with the serving API stopped or hanging: a clear message and no exception."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import free_port

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = [None, "pages/billing.py", "pages/reconciliation.py", "pages/health.py"]


@pytest.fixture
def silent_port():
    """Return a port that accepts connections but never sends a response, like a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture(params=["stopped", "hanging"])
def unavailable_api(request, dashboard_environ, monkeypatch) -> str:
    """Point the dashboard at a serving API that is stopped or never responds; return the case."""
    if request.param == "stopped":
        port = free_port()
    else:
        port = request.getfixturevalue("silent_port")
    monkeypatch.setenv("ADCLICK_SERVING_PORT", str(port))
    monkeypatch.setenv("ADCLICK_DASHBOARD_REQUEST_TIMEOUT_S", "0.5")
    return request.param


@pytest.mark.parametrize("page", PAGES, ids=["live", "billing", "reconciliation", "health"])
def test_page_shows_serving_unavailable(unavailable_api, page) -> None:
    app = AppTest.from_file(APP, default_timeout=30).run()
    if page is not None:
        app.switch_page(page).run()

    assert not app.exception, [item.value for item in app.exception]
    errors = [item.value for item in app.error]
    assert len(errors) == 1, errors
    assert errors[0].startswith("Serving API unavailable")
    assert "adclick serve" in errors[0]
    expected = "timed out" if unavailable_api == "hanging" else "connection to"
    assert expected in errors[0]
    assert not app.dataframe or page == "pages/health.py"


def test_health_lists_serving_api_down(unavailable_api) -> None:
    app = AppTest.from_file(APP, default_timeout=30).run()
    app.switch_page("pages/health.py").run()

    services = app.dataframe[0].value
    responds = dict(zip(services["service"], services["responds"]))
    assert responds["serving API"] == "no"
    assert "serving ingest (Kafka and Delta)" not in responds
    assert any("serving API" in item.value for item in app.warning)
