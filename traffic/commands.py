"""``adclick replay FILE`` and ``adclick generate``: traffic through the collector."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared_logic.settings import Settings


def _collector_url(args: argparse.Namespace, settings: Settings) -> str:
    return args.collector_url or f"http://{settings.collector_host}:{settings.collector_port}"


def register(subparsers: argparse._SubParsersAction) -> None:
    replay = subparsers.add_parser(
        "replay", help="replay a click log (TalkingData CSV or JSON lines) through the collector",
        description="Replay a click log through the collector's HTTP API, keeping each click's event "
                    "time shifted by whole days so the last click falls on or before now.")
    replay.add_argument("file", type=Path, help="TalkingData CSV or JSON-lines click log")
    replay.add_argument("--speedup", type=float, default=2000.0,
                        help="replay this many times faster than the log's own pace; 0 sends as fast as "
                             "possible (default: 2000)")
    replay.add_argument("--limit", type=int, help="send only the first N clicks by event time")
    replay.add_argument("--summary", type=Path, help="also write the summary as JSON to this file")
    replay.add_argument("--collector-url", help="collector base URL (default: from settings)")
    replay.set_defaults(handler=_replay)

    generate = subparsers.add_parser(
        "generate", help="send synthetic clicks with a recorded ground truth",
        description="Send Zipf-skewed synthetic clicks with chosen shares of duplicates, out-of-order, "
                    "late and invalid clicks, and write the expected counts to a JSON file.")
    generate.add_argument("--rate", type=float, default=200.0, help="clicks per second (default: 200)")
    generate.add_argument("--duration-s", type=float, default=30.0, help="how long to send, in seconds")
    generate.add_argument("--ads", type=int, default=1000, help="number of distinct ads (default: 1000)")
    generate.add_argument("--zipf-exponent", type=float, default=1.2, help="skew of ad popularity")
    generate.add_argument("--duplicate-share", type=float, default=0.02, help="share of resent clicks")
    generate.add_argument("--out-of-order-share", type=float, default=0.1,
                          help="share of clicks behind now by up to the bounded out-of-orderness")
    generate.add_argument("--late-share", type=float, default=0.01,
                          help="share of clicks later than the allowed lateness")
    generate.add_argument("--invalid-share", type=float, default=0.01, help="share of invalid clicks")
    generate.add_argument("--seed", type=int, default=7, help="random seed; also part of each click id")
    generate.add_argument("--truth", type=Path, help="ground-truth JSON (default: var/generate/truth-SEED.json)")
    generate.add_argument("--collector-url", help="collector base URL (default: from settings)")
    generate.set_defaults(handler=_generate)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from traffic.replay import replay
    from traffic.sources import SourceError

    try:
        summary = replay(args.file, _collector_url(args, settings), args.speedup, limit=args.limit,
                         zone=settings.billing_zone)
    except SourceError as exc:
        print(f"adclick replay: {exc}", file=sys.stderr)
        return 2
    print(summary.to_json())
    if args.summary:
        args.summary.write_text(summary.to_json())
    return 0


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from traffic.generate import TrafficMix, generate

    mix = TrafficMix(args.rate, args.duration_s, args.ads, args.zipf_exponent, args.duplicate_share,
                     args.out_of_order_share, args.late_share, args.invalid_share, args.seed)
    truth_path = args.truth or settings.path("generate", f"truth-{args.seed}.json")
    truth = generate(mix, settings, _collector_url(args, settings), truth_path)
    print(f"sent {truth.sent} clicks: {truth.invalid} invalid, {truth.duplicates} duplicates, "
          f"{truth.late} late; ground truth in {truth_path}")
    return 0
