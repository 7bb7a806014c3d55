"""Replay a click log through the collector, keeping each click's own event time.

Event times are shifted by whole days so that the log's last click falls
on or before now (times of day and billing days stay aligned), and the
replay runs ``speedup`` times faster than the log's own pace.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from tqdm import tqdm

from shared_logic.time_buckets import billing_day
from shared_logic.timestamps import format_utc_ms, now_ms, parse_timestamp_ms
from traffic.sender import CollectorClient
from traffic.sources import LoggedClick, SourceError, read_clicks

logger = logging.getLogger(__name__)
DAY_MS = 86_400_000


@dataclass
class ReplaySummary:
    source: str
    clicks_in_file: int
    sent: int
    accepted: int
    rejected: int
    unique_click_ids: int
    duplicates: int
    retries: int
    shift_days: int
    first_event: str
    last_event: str
    accepted_unique_per_day: dict[str, int]

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


def shift_days_for(clicks: list[LoggedClick], now: int) -> int:
    """Return the whole number of days that moves the last click to on or before ``now``."""
    last = max(click.event_time_ms for click in clicks)
    return (now - last) // DAY_MS


def to_payload(click: LoggedClick, shift_ms: int) -> dict:
    payload = {"ad_id": click.ad_id, "user_id": click.user_id, **click.attributes}
    # A row whose time could not be parsed is sent without a zone so the
    # collector rejects it and it is counted, not silently skipped.
    payload["timestamp"] = (format_utc_ms(click.event_time_ms + shift_ms) if click.event_time_ms >= 0
                            else "unparseable")
    if click.click_id:
        payload["click_id"] = click.click_id
    return payload


def replay(path: Path, collector_url: str, speedup: float, batch_size: int = 500,
           limit: int | None = None, zone: ZoneInfo = ZoneInfo("UTC"), progress: bool = True) -> ReplaySummary:
    """Send every click of ``path`` to the collector and return what happened."""
    clicks = read_clicks(path)
    if limit:
        clicks = clicks[:limit]
    valid = [click for click in clicks if click.event_time_ms >= 0]
    if not valid:
        raise SourceError(f"{path} has no click with a valid time")
    shift_ms = shift_days_for(valid, now_ms()) * DAY_MS
    first_ms = valid[0].event_time_ms
    client = CollectorClient(collector_url)
    started = time.monotonic()
    logger.info("replaying %d clicks from %s, shifted by %d days, %.0fx speed",
                len(clicks), path, shift_ms // DAY_MS, speedup)
    with tqdm(total=len(clicks), unit="click", disable=not progress, desc="replay") as bar:
        for batch in _paced_batches(clicks, first_ms, started, speedup, batch_size):
            client.send([to_payload(click, shift_ms) for click in batch])
            bar.update(len(batch))
    return _summary(path, clicks, client, shift_ms, zone)


def _paced_batches(clicks: list[LoggedClick], first_ms: int, started: float, speedup: float, batch_size: int):
    batch: list[LoggedClick] = []
    for click in clicks:
        # Rows without a valid time are sent at once; they take no part in pacing.
        due = started + max(0, click.event_time_ms - first_ms) / 1000 / speedup if speedup > 0 else 0
        wait = due - time.monotonic()
        if batch and (wait > 0 or len(batch) >= batch_size):
            yield batch
            batch = []
            wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        batch.append(click)
    if batch:
        yield batch


def _summary(path: Path, clicks: list[LoggedClick], client: CollectorClient, shift_ms: int,
             zone: ZoneInfo) -> ReplaySummary:
    totals = client.totals
    unique = totals.accepted_clicks
    per_day = Counter(billing_day(parse_timestamp_ms(timestamp), zone).isoformat() for timestamp in unique.values())
    return ReplaySummary(
        source=str(path), clicks_in_file=len(clicks), sent=totals.sent, accepted=totals.accepted,
        rejected=totals.rejected, unique_click_ids=len(unique), duplicates=totals.accepted - len(unique),
        retries=totals.retries, shift_days=shift_ms // DAY_MS,
        first_event=format_utc_ms(min(c.event_time_ms for c in clicks if c.event_time_ms >= 0) + shift_ms),
        last_event=format_utc_ms(clicks[-1].event_time_ms + shift_ms),
        accepted_unique_per_day=dict(sorted(per_day.items())),
    )
