"""Synthetic click traffic with a recorded ground truth.

Ads are drawn from a Zipf distribution, so a few ads get most clicks. Chosen
shares of the clicks are duplicates (a resent earlier click), out of order
(event time up to the bounded out-of-orderness behind now), late beyond the
allowed lateness, or invalid. The ground truth records what each layer must
count: the batch layer bills every unique valid click, the speed layer all of
them except those sent too late.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from shared_logic.settings import Settings
from shared_logic.time_buckets import minute_start_ms
from shared_logic.timestamps import format_utc_ms, now_ms, parse_timestamp_ms
from traffic.sender import CollectorClient

logger = logging.getLogger(__name__)
# Late clicks are this far beyond out-of-orderness plus allowed lateness, so
# the speed layer's watermark has certainly passed them when they arrive.
LATE_MARGIN_S = 60


@dataclass
class TrafficMix:
    rate_per_s: float = 200.0
    duration_s: float = 30.0
    ads: int = 1000
    zipf_exponent: float = 1.2
    duplicate_share: float = 0.02
    out_of_order_share: float = 0.1
    late_share: float = 0.01
    invalid_share: float = 0.01
    seed: int = 7


@dataclass
class GroundTruth:
    sent: int = 0
    invalid: int = 0
    duplicates: int = 0
    late: int = 0
    # "ad_id|window_start_ms" -> unique valid clicks (batch) and those the speed layer counts.
    batch_per_minute: Counter = field(default_factory=Counter)
    speed_per_minute: Counter = field(default_factory=Counter)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # dataclasses.asdict would rebuild the Counters from their items, so copy by hand.
        data = {name: getattr(self, name) for name in ("sent", "invalid", "duplicates", "late")}
        data["batch_per_minute"] = dict(self.batch_per_minute)
        data["speed_per_minute"] = dict(self.speed_per_minute)
        data["batch_total"] = sum(self.batch_per_minute.values())
        data["speed_total"] = sum(self.speed_per_minute.values())
        path.write_text(json.dumps(data, indent=2, sort_keys=True))


class ClickFactory:
    def __init__(self, mix: TrafficMix, settings: Settings):
        self.mix = mix
        self.settings = settings
        self.random = random.Random(mix.seed)
        weights = [1 / (rank ** mix.zipf_exponent) for rank in range(1, mix.ads + 1)]
        self.ad_ids = [f"ad-{rank:05d}" for rank in range(1, mix.ads + 1)]
        self.cumulative = list(_accumulate(weights))
        self.sent_valid: list[dict] = []
        self.counter = 0

    def next_click(self, now: int) -> tuple[str, dict]:
        """Return (kind, payload) with kind one of valid, out_of_order, late, duplicate, invalid."""
        roll = self.random.random()
        mix = self.mix
        if roll < mix.invalid_share:
            return "invalid", self._invalid(now)
        roll -= mix.invalid_share
        if roll < mix.duplicate_share and self.sent_valid:
            return "duplicate", self.random.choice(self.sent_valid[-1000:])
        roll -= mix.duplicate_share
        if roll < mix.late_share:
            behind_s = self.settings.allowed_lateness_s + self.settings.out_of_orderness_s + LATE_MARGIN_S
            return "late", self._valid(now - behind_s * 1000 - self.random.randint(0, 60_000))
        roll -= mix.late_share
        if roll < mix.out_of_order_share:
            return "out_of_order", self._valid(now - self.random.randint(0, self.settings.out_of_orderness_s * 1000))
        return "valid", self._valid(now)

    def _valid(self, event_time_ms: int) -> dict:
        self.counter += 1
        ad_index = _bisect(self.cumulative, self.random.random() * self.cumulative[-1])
        payload = {"ad_id": self.ad_ids[ad_index], "user_id": f"user-{self.random.randint(1, 50_000)}",
                   "timestamp": format_utc_ms(event_time_ms), "click_id": f"gen-{self.mix.seed}-{self.counter}"}
        self.sent_valid.append(payload)
        return payload

    def _invalid(self, now: int) -> dict:
        broken = [
            {"user_id": "user-1", "timestamp": format_utc_ms(now)},
            {"ad_id": "ad-00001", "user_id": "user-1", "timestamp": format_utc_ms(now)[:-1]},
            {"ad_id": "ad-00001", "user_id": "user-1", "timestamp": format_utc_ms(now + 86_400_000)},
            {"ad_id": 17, "user_id": "user-1", "timestamp": format_utc_ms(now)},
        ]
        return self.random.choice(broken)


def _accumulate(weights: list[float]):
    total = 0.0
    for weight in weights:
        total += weight
        yield total


def _bisect(cumulative: list[float], value: float) -> int:
    low, high = 0, len(cumulative) - 1
    while low < high:
        middle = (low + high) // 2
        if cumulative[middle] < value:
            low = middle + 1
        else:
            high = middle
    return low


def generate(mix: TrafficMix, settings: Settings, collector_url: str, truth_path: Path,
             batch_size: int = 200, progress: bool = True) -> GroundTruth:
    """Send ``rate_per_s`` clicks per second for ``duration_s`` and write the ground truth."""
    factory = ClickFactory(mix, settings)
    client = CollectorClient(collector_url)
    truth = GroundTruth()
    total = int(mix.rate_per_s * mix.duration_s)
    started = time.monotonic()
    logger.info("generating %d clicks at %.0f/s over %d ads", total, mix.rate_per_s, mix.ads)
    with tqdm(total=total, unit="click", disable=not progress, desc="generate") as bar:
        for sent in range(0, total, batch_size):
            count = min(batch_size, total - sent)
            batch = [factory.next_click(now_ms()) for _ in range(count)]
            client.send([payload for _, payload in batch])
            _record(truth, batch)
            bar.update(count)
            wait = started + (sent + count) / mix.rate_per_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
    truth.write(truth_path)
    logger.info("sent %d clicks (%d invalid, %d duplicates, %d late); ground truth in %s",
                truth.sent, truth.invalid, truth.duplicates, truth.late, truth_path)
    return truth


def _record(truth: GroundTruth, batch: list[tuple[str, dict]]) -> None:
    for kind, payload in batch:
        truth.sent += 1
        if kind == "invalid":
            truth.invalid += 1
            continue
        if kind == "duplicate":
            truth.duplicates += 1
            continue
        key = f"{payload['ad_id']}|{minute_start_ms(parse_timestamp_ms(payload['timestamp']))}"
        truth.batch_per_minute[key] += 1
        if kind == "late":
            truth.late += 1
        else:
            truth.speed_per_minute[key] += 1
