"""A small read-only client of the serving API, and the cached loaders the pages call.

Every loader takes the API's base URL and the request timeout as
parameters, so both are part of its cache key and two dashboards pointed
at different APIs never share a cached response. A failed request raises,
and Streamlit caches no exception, so the next rerun requests it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
import streamlit as st

from shared_logic.settings import Settings, load_settings

logger = logging.getLogger(__name__)

# Live data changes every few seconds; one second only merges the requests
# of sessions that refresh at the same moment.
LIVE_CACHE_TTL_S = 1.0
# Billing totals and reconciliation reports change when a minute is finalized
# or a batch run closes a day, so half a minute of staleness is acceptable.
REPORT_CACHE_TTL_S = 30.0
# Log the first failure of a URL and then one in this many, so a stopped API
# does not write a line per page refresh.
FAILURE_LOG_EVERY = 60

_failures_by_url: dict[str, int] = {}


class ServingError(RuntimeError):
    """A request to the serving API that returned no usable response."""


class ServingUnavailable(ServingError):
    """The serving API refused the connection, timed out or failed with a server error (HTTP 5xx)."""


class ServingRejected(ServingError):
    """The serving API rejected the request (HTTP 4xx); the message is the API's own."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class DashboardConfig:
    """The dashboard's view of the settings: service URLs, request timeout and refresh interval."""

    serving_url: str
    collector_url: str
    request_timeout_s: float
    refresh_interval_s: float
    billing_timezone: str
    max_top_minutes: int
    max_billing_days: int


def _client_host(host: str) -> str:
    # A server bound to every interface is reached through the loopback one.
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def config_from_settings(settings: Settings) -> DashboardConfig:
    return DashboardConfig(
        serving_url=f"http://{_client_host(settings.serving_host)}:{settings.serving_port}",
        collector_url=f"http://{_client_host(settings.collector_host)}:{settings.collector_port}",
        request_timeout_s=settings.dashboard_request_timeout_s,
        refresh_interval_s=settings.dashboard_refresh_interval_s,
        billing_timezone=settings.billing_timezone,
        max_top_minutes=settings.serving_max_top_minutes,
        max_billing_days=settings.serving_max_billing_days,
    )


def load_config() -> DashboardConfig:
    """Read the ``ADCLICK_*`` environment, which ``adclick dashboard`` passes to Streamlit."""
    return config_from_settings(load_settings())


def _record_failure(url: str, reason: str) -> None:
    count = _failures_by_url.get(url, 0) + 1
    _failures_by_url[url] = count
    if count == 1 or count % FAILURE_LOG_EVERY == 0:
        logger.warning("request to %s failed (%d failures so far): %s", url, count, reason)


def get_json(base_url: str, path: str, params: dict | None, timeout_s: float) -> dict:
    """GET ``base_url + path`` and return the decoded JSON body.

    Raises ``ServingUnavailable`` when the connection fails, the request times
    out or the API fails (5xx), and ``ServingRejected`` on a 4xx response.
    """
    url = base_url + path
    try:
        response = requests.get(url, params=params, timeout=timeout_s)
    except requests.Timeout as exc:
        _record_failure(url, str(exc))
        raise ServingUnavailable(f"the request {path} to {base_url} timed out after {timeout_s:g} s") from exc
    except requests.ConnectionError as exc:
        _record_failure(url, str(exc))
        raise ServingUnavailable(f"the connection to {base_url} failed (refused or unreachable)") from exc
    if response.status_code >= 500:
        _record_failure(url, f"HTTP {response.status_code}: {response.text[:200]}")
        raise ServingUnavailable(f"the request {path} to {base_url} failed with HTTP "
                                 f"{response.status_code}; the log of `adclick serve` has the cause")
    try:
        body = response.json()
    except ValueError as exc:
        _record_failure(url, f"HTTP {response.status_code} with a body that is not JSON")
        raise ServingUnavailable(f"the response of {url} (HTTP {response.status_code}) is not JSON; "
                                 "check that the port belongs to `adclick serve`") from exc
    if response.status_code >= 400:
        message = body.get("message", response.text) if isinstance(body, dict) else response.text
        raise ServingRejected(response.status_code, message)
    _failures_by_url.pop(url, None)
    return body


@st.cache_data(ttl=LIVE_CACHE_TTL_S, show_spinner=False)
def load_top(base_url: str, timeout_s: float, minutes: int, limit: int) -> dict:
    return get_json(base_url, "/v1/top", {"minutes": minutes, "limit": limit}, timeout_s)


@st.cache_data(ttl=LIVE_CACHE_TTL_S, show_spinner=False)
def load_series(base_url: str, timeout_s: float, ad_id: str, granularity: str, start_ms: int, end_ms: int) -> dict:
    path = f"/v1/ads/{requests.utils.quote(ad_id, safe='')}/clicks"
    return get_json(base_url, path, {"granularity": granularity, "start": start_ms, "end": end_ms}, timeout_s)


@st.cache_data(ttl=LIVE_CACHE_TTL_S, show_spinner=False)
def load_status(base_url: str, timeout_s: float) -> dict:
    return get_json(base_url, "/v1/status", None, timeout_s)


@st.cache_data(ttl=REPORT_CACHE_TTL_S, show_spinner=False)
def load_billing(base_url: str, timeout_s: float, start_day: str, end_day: str, ad_id: str | None) -> dict:
    params = {"start_day": start_day, "end_day": end_day}
    if ad_id:
        params["ad_id"] = ad_id
    return get_json(base_url, "/v1/billing", params, timeout_s)


@st.cache_data(ttl=REPORT_CACHE_TTL_S, show_spinner=False)
def load_reconciliation(base_url: str, timeout_s: float, day: str) -> dict:
    return get_json(base_url, "/v1/reconciliation", {"day": day}, timeout_s)


@dataclass(frozen=True)
class Probe:
    """The outcome of one health probe of a service."""

    service: str
    url: str
    responds: bool
    detail: str
    body: dict | None = None


@st.cache_data(ttl=LIVE_CACHE_TTL_S, show_spinner=False)
def probe_service(service: str, url: str, timeout_s: float) -> Probe:
    """GET a health endpoint and report whether it responded with HTTP 200 and a JSON body.

    Connection failures, timeouts and bodies that are not JSON become a ``Probe`` with
    ``responds=False``; other ``requests`` errors (an invalid URL) propagate.
    """
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.Timeout:
        return Probe(service, url, False, f"timed out after {timeout_s:g} s")
    except requests.ConnectionError:
        return Probe(service, url, False, "connection failed (refused or unreachable)")
    try:
        body = response.json()
    except ValueError:
        return Probe(service, url, False, f"HTTP {response.status_code} with a body that is not JSON")
    if response.status_code != 200:
        return Probe(service, url, False, f"HTTP {response.status_code}", body if isinstance(body, dict) else None)
    status = body.get("status", "ok") if isinstance(body, dict) else "ok"
    return Probe(service, url, True, f"HTTP 200, status {status}", body if isinstance(body, dict) else None)
