"""Render BENCHMARKS.md from the result files each benchmark writes.

Every benchmark writes ``bench/results/<name>.json``:
``{"benchmark": str, "machine": {...}, "versions": {...}, "rows": [row, ...]}``
where a row is ``{"metric", "value", "unit", "peer", "peer_value", "ratio", "notes"}``
(``peer`` is what the figure is compared with in the same run, or null).
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPORT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
PACKAGES = ("apache-flink", "pyspark", "delta-spark", "duckdb", "kafka-python", "apache-airflow", "streamlit")


def machine() -> dict[str, str]:
    """Describe the machine a benchmark ran on."""
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "cores": str(os.cpu_count()),
        "memory_gib": f"{memory_kb / 1024 / 1024:.0f}",
        "cpu": _cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {**found, **(extra or {})}


def write_result(name: str, rows: list[dict], extra_versions: dict[str, str] | None = None) -> Path:
    """Write one benchmark's rows and re-render BENCHMARKS.md."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "benchmark": name,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(extra_versions),
        "rows": rows,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    render()
    return path


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def render() -> None:
    results = [json.loads(path.read_text()) for path in sorted(RESULTS_DIR.glob("*.json"))]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (or one `make bench-<layer>`) from `bench/results/*.json`.",
        "Each figure is compared with a peer or ceiling measured in the same run.",
        "",
        "| benchmark | metric | value | unit | compared with | peer value | ratio | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for row in result["rows"]:
            lines.append("| " + " | ".join(_cell(v) for v in (
                result["benchmark"], row["metric"], row["value"], row["unit"], row.get("peer"),
                row.get("peer_value"), row.get("ratio"), row.get("notes"))) + " |")
    lines += ["", "## Machines and versions", ""]
    for result in results:
        info = result["machine"]
        vers = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
        lines.append(f"- {result['benchmark']} ({result['measured_at']}): {info['cores']} cores, "
                     f"{info['memory_gib']} GiB, {info['cpu']}; {vers}")
    REPORT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    render()
