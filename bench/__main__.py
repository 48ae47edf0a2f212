"""`python -m bench [--quick] [--long N]`: snapshotd vs a naive Playwright loop and shot-scraper.

Every figure and its baseline come from the same run on the same machine; nothing is asserted, the
table says which targets were met.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from bench import (
    adpage,
    baseline,
    charts,
    composites,
    corpus,
    evidence,
    network,
    probes,
    proc,
    render,
    report,
    rollups,
    scaling,
)
from bench import load as api_load
from bench.client import BenchFailure
from bench.pages import PageServer, build_page
from bench.run import Plan, ServeResult, serve_run


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N everywhere (~3 minutes)")
    parser.add_argument("-n", "--shots", type=int, help="shots per throughput run (default 40)")
    parser.add_argument("--long", type=int, help="captures before the last memory reading")
    parser.add_argument(
        "--concurrency",
        default="2,4",
        help="comma-separated SNAPSHOTD_WORKER_CONCURRENCY values, one server each (default 2,4)",
    )
    parser.add_argument("--no-shot-scraper", action="store_true", help="skip the shot-scraper row")
    parser.add_argument(
        "--load-seconds", type=float, help="measured seconds per API load run (default 15)"
    )
    parser.add_argument(
        "--only",
        choices=(
            "pages",
            "corpus",
            "ads",
            "evidence",
            "charts",
            "composites",
            "rollups",
            "tests",
            "load",
            "render",
            "scaling",
        ),
        help="run only the page-capture, the real-world corpus, the ad-heavy page, the evidence "
        "cost, the chart and metric, the composite metric, the stored roll-ups, the synthetic "
        "test, the API load, the render link, or the worker scaling figures",
    )
    args = parser.parse_args(argv)
    args.shots = args.shots or (12 if args.quick else 40)
    args.long = args.long or (200 if args.quick else 1000)
    args.cli_shots = 3 if args.quick else 8
    args.concurrency = [int(part) for part in args.concurrency.split(",") if part.strip()]
    return args


def _say(message: str) -> None:
    print(f"... {message}", flush=True)


def _versions(browser_version: str) -> list[str]:
    shell = subprocess.run(
        [baseline.HEADLESS_SHELL, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    packages = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("playwright", "shot-scraper")
    )
    return [
        f"Chromium: {shell or '?'} (browser.version {browser_version}), {baseline.HEADLESS_SHELL}",
        f"Python packages: {packages}",
    ]


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C so every context manager shuts its servers and processes down.
    raise KeyboardInterrupt


def _pages(
    args: argparse.Namespace,
) -> tuple[baseline.LoopResult, baseline.CliResult, list[ServeResult], baseline.LoopResult]:
    page = build_page()
    runs: list[ServeResult] = []
    with PageServer(page) as pages:
        _say(f"page: {len(page) // 1024} KiB at {pages.url}")
        _say(f"baseline: naive Playwright loop, {args.shots} shots after 3 warm-up")
        base = baseline.playwright_loop(pages.url, args.shots)
        if args.no_shot_scraper:
            cli = baseline.CliResult(None, "shot-scraper row skipped (--no-shot-scraper)")
        else:
            _say(f"shot-scraper: {args.cli_shots} shots, one process each")
            cli = baseline.shot_scraper_loop(pages.url, args.cli_shots)
        for index, concurrency in enumerate(args.concurrency):
            plan = Plan(
                shots=args.shots,
                sync_shots=args.shots,
                memory=index == 0,
                memory_long=args.long,
            )
            runs.append(serve_run(pages.url, concurrency, plan, _say))
        _say(f"baseline again, to see the machine's drift; load {proc.load_average():.2f}")
        rerun = baseline.playwright_loop(pages.url, args.shots)
    return base, cli, runs, rerun


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # A shell without job control starts background jobs with SIGINT ignored; Ctrl-C must work.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    began = time.monotonic()
    load = proc.load_average()
    page = build_page()  # only its size is reported; _pages builds its own
    runs: list[ServeResult] = []
    corpus_result: corpus.CorpusResult | None = None
    ad_result: adpage.AdResult | str | None = None
    evidence_result: evidence.EvidenceResult | None = None
    chart_result: charts.ChartResult | None = None
    composite_result: composites.CompositeResult | None = None
    rollup_result: rollups.RollupResult | None = None
    probe_result: probes.ProbeResult | None = None
    network_result: network.NetworkResult | None = None
    load_result: api_load.LoadResult | None = None
    render_result: render.RenderResult | None = None
    scaling_result: scaling.ScalingResult | None = None
    base = rerun = None
    cli = baseline.CliResult(None, "")
    try:
        if args.only in (None, "pages"):
            base, cli, runs, rerun = _pages(args)
        if args.only in (None, "corpus"):
            corpus_result = corpus.run(args.quick, _say)
        if args.only in (None, "ads"):
            ad_result = adpage.run(args.quick, _say)
        if args.only in (None, "evidence"):
            evidence_result = evidence.run(args.quick, _say)
        if args.only in (None, "charts"):
            chart_result = charts.run(args.quick, _say)
        if args.only in (None, "composites"):
            composite_result = composites.run(args.quick, _say)
        if args.only in (None, "rollups"):
            rollup_result = rollups.run(args.quick, _say)
        if args.only in (None, "tests"):
            probe_result = probes.run(args.quick, _say)
            network_result = network.run(args.quick, _say)
        if args.only in (None, "load"):
            load_result = api_load.run(args.quick, _say, args.load_seconds)
        if args.only in (None, "render"):
            render_result = render.run(args.quick, _say)
        if args.only in (None, "scaling"):
            scaling_result = scaling.run(args.quick, _say)
    except KeyboardInterrupt:
        print("\ninterrupted; servers and processes were shut down", file=sys.stderr)
        return 130
    except BenchFailure as error:
        print(f"\nbench failed: {error}", file=sys.stderr)
        return 1
    minutes = (time.monotonic() - began) / 60
    print()
    print(
        f"machine: {os.cpu_count()} CPUs, 1-min load average {load:.2f} at start, "
        f"{proc.load_average():.2f} at end (other work on the machine skews every figure)"
    )
    if base is not None:
        print("\n".join(_versions(base.browser_version)))
        print(f"page: {len(page):,} bytes, 1280x800 PNG, fresh context per shot, loopback only")
        print(f"shot-scraper: {cli.note}")
        print()
        print(report.render(report.build_rows(base, cli, runs, rerun)))
        print()
        for run in runs:
            if run.shutdown is not None:
                leftover = len(run.shutdown.leftover_browsers)
                print(f"c={run.concurrency}: leftover browser processes: {leftover}")
    if corpus_result is not None:
        print()
        print(corpus.describe(corpus_result))
        print(report.render(corpus.rows(corpus_result)))
    if isinstance(ad_result, str):
        print(f"\n{ad_result}")
    elif ad_result is not None:
        print()
        print(adpage.describe(ad_result))
        print(report.render(adpage.rows(ad_result)))
    if evidence_result is not None:
        print()
        print(evidence.describe(evidence_result))
        print(report.render(evidence.rows(evidence_result)))
    if chart_result is not None:
        print()
        print(report.render(charts.rows(chart_result)))
        print()
    if composite_result is not None:
        print(report.render(composites.rows(composite_result)))
    if rollup_result is not None:
        print(rollups.describe(rollup_result))
        print(report.render(rollups.rows(rollup_result)))
        print()
    if probe_result is not None:
        rows = probes.rows(probe_result)
        print(report.render(rows + (network.rows(network_result) if network_result else [])))
        print()
    if load_result is not None:
        print(report.render(report.load_rows(load_result)))
        print("\n".join(load_result.notes))
        print()
    if render_result is not None:
        print(render.describe(render_result))
        print(report.render(render.rows(render_result)))
        print("\n".join(render_result.notes))
        print()
    if scaling_result is not None:
        print(scaling.describe(scaling_result))
        print(report.render(scaling.rows(scaling_result)))
        print()
    print(f"bench took {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
