"""Send clicks to the collector in batches, retrying on 503 after the Retry-After delay."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import requests

logger = logging.getLogger(__name__)


@dataclass
class SendTotals:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    # Every accepted click id with its normalised timestamp; a retried click keeps one entry.
    accepted_clicks: dict[str, str] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)


class CollectorClient:
    def __init__(self, base_url: str, max_attempts: int = 20, timeout_s: float = 60.0):
        self.url = base_url.rstrip("/") + "/v1/clicks"
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.totals = SendTotals()

    def send(self, clicks: list[dict]) -> dict:
        """Post one batch and return the collector's response body.

        A 503 is retried with the same body after Retry-After seconds; the
        click ids make the retry safe from double counting.
        """
        body = json.dumps(clicks)
        for attempt in range(1, self.max_attempts + 1):
            response = self.session.post(self.url, data=body, timeout=self.timeout_s,
                                         headers={"Content-Type": "application/json"})
            if response.status_code != 503:
                break
            delay = float(response.headers.get("Retry-After", "1"))
            logger.warning("collector returned 503 (attempt %d of %d); retrying in %.0f s",
                           attempt, self.max_attempts, delay)
            self.totals.retries += 1
            time.sleep(delay)
        if response.status_code not in (202, 400):
            raise RuntimeError(f"collector returned {response.status_code}: {response.text[:500]}")
        result = response.json()
        self.totals.sent += len(clicks)
        self.totals.accepted += result.get("accepted", 0)
        self.totals.rejected += len(result.get("errors", []))
        for item in result.get("clicks", []):
            self.totals.accepted_clicks[item["click_id"]] = item["timestamp"]
        self.totals.errors.extend(result.get("errors", []))
        return result
