"""The speed job's optimized plan, printed by ``speed_layer.job --explain`` with the PyFlink interpreter."""

from __future__ import annotations

import subprocess

import pytest

from shared_logic.settings import Settings
from speed_layer.runner import job_environment


@pytest.fixture(scope="module")
def plan(base_settings: Settings) -> str:
    return optimized_plan(base_settings)


def optimized_plan(settings: Settings) -> str:
    result = subprocess.run([str(settings.flink_python), "-m", "speed_layer.job", "--explain"],
                            env=job_environment(settings), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout.split("== Optimized Execution Plan ==", 1)[1]


def test_one_deduplication_feeds_every_sink(plan: str) -> None:
    # A second deduplication would give clicks-late its own lateness filter,
    # which could disagree with the counts about which clicks are late.
    assert plan.count("Deduplicate(") == 1, plan
    assert plan.count("Sink(table=") == 3, plan


def test_heartbeats_dropped_before_deduplication(plan: str) -> None:
    scan = next(line for line in plan.splitlines() if "TableSourceScan(" in line)
    assert "watermark=" in scan
    assert "heartbeat" in scan
    dedup_input = plan.split("Deduplicate(", 1)[1].split("TableSourceScan(", 1)[0]
    assert "where=[(heartbeat IS NULL OR NOT(heartbeat))]" in dedup_input
