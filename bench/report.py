"""Turns measurements into the table `make bench` prints."""

from __future__ import annotations

from dataclasses import dataclass

from bench.baseline import CliResult, LoopResult
from bench.load import LoadResult, LoadRun
from bench.run import ServeResult
from bench.server import Shutdown
from bench.stats import Series

DASH = "-"


@dataclass
class Row:
    name: str
    figure: str
    baseline: str = DASH
    ratio: str = DASH
    target: str = DASH
    met: str = ""


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else DASH


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def _throughput_rows(
    label: str, series: Series | None, base: LoopResult, cli: CliResult
) -> list[Row]:
    if series is None:
        return []
    rate, base_rate = series.rate, base.series.rate
    rows = [
        Row(
            f"{label}: shots/s",
            f"{rate:.2f}",
            f"{base_rate:.2f}",
            _ratio(rate, base_rate),
            ">= 1.30x",
            _met(rate >= 1.3 * base_rate),
        )
    ]
    if cli.series is not None:
        cli_rate = cli.series.rate
        rows.append(
            Row(
                f"{label}: vs shot-scraper",
                f"{rate:.2f}",
                f"{cli_rate:.2f} (ss)",
                _ratio(rate, cli_rate),
                ">= 6x",
                _met(rate >= 6 * cli_rate),
            )
        )
    return rows


def _serve_rows(run: ServeResult, base: LoopResult, cli: CliResult) -> list[Row]:
    c = f"c={run.concurrency}"
    rows = _throughput_rows(f"snapshotd {c} async, evidence off", run.async_plain, base, cli)
    rows += _throughput_rows(f"snapshotd {c} async, evidence on", run.async_evidence, base, cli)
    if run.sync is not None:
        delta = run.sync.p50 - base.series.p50
        rows.append(
            Row(
                f"snapshotd {c} sync /capture p50 (n={len(run.sync)})",
                f"{run.sync.p50:.0f} ms",
                f"{base.series.p50:.0f} ms",
                f"{delta:+.0f} ms",
                "<= +30 ms",
                _met(delta <= 30),
            )
        )
        rows.append(Row(f"snapshotd {c} sync /capture p99", f"{run.sync.p99:.0f} ms"))
        rows += _cpu_row(f"snapshotd {c} serve-process CPU per sync capture", run.sync, base)
    rows += _memory_rows(run)
    if run.shutdown is not None:
        rows += _shutdown_rows(c, run.shutdown)
    return rows


def _cpu_row(name: str, series: Series, base: LoopResult) -> list[Row]:
    cpu, base_cpu = series.cpu_ms, base.series.cpu_ms
    if cpu is None or base_cpu is None:
        return []
    return [Row(name, f"{cpu:.0f} ms", f"{base_cpu:.0f} ms (client)", _ratio(cpu, base_cpu))]


def _shutdown_rows(c: str, down: Shutdown) -> list[Row]:
    browsers = len(down.leftover_browsers)
    rows = [
        Row(f"snapshotd {c} SIGTERM to exit", f"{down.seconds:.1f} s ({down.how})"),
        Row(
            f"snapshotd {c} browser procs before / at exit",
            f"{down.browsers_before} / {down.browsers_at_exit}",
        ),
        Row(
            f"snapshotd {c} leftover browser processes",
            str(browsers),
            target="0",
            met=_met(browsers == 0 and down.exit_code is not None),
        ),
    ]
    others = len(down.leftover) - browsers
    if others:
        names = ", ".join(sorted({p.name for p in down.leftover if not p.is_browser}))
        rows.append(Row(f"snapshotd {c} other leftover processes", f"{others} ({names})"))
    if down.in_flight:
        states = sorted(down.in_flight.values())
        finished = sum(state in ("success", "failed") for state in states)
        rows.append(
            Row(
                f"snapshotd {c} in-flight jobs finished on SIGTERM",
                f"{finished}/{len(states)} ({', '.join(states)})",
                target="all",
                met=_met(finished == len(states)),
            )
        )
    return rows


def _memory_rows(run: ServeResult) -> list[Row]:
    if not run.memory:
        return []
    c = f"c={run.concurrency}"
    idle, *later = run.memory
    rows = [
        Row(
            f"snapshotd {c} PSS idle ({idle.processes} procs)",
            f"{idle.mib:.0f} MiB",
            target="<= 500 MiB",
            met=_met(idle.mib <= 500),
        )
    ]
    for point in later:
        rows.append(
            Row(
                f"snapshotd {c} PSS after {point.captures} captures ({point.processes} procs)",
                f"{point.mib:.0f} MiB",
            )
        )
    if len(later) == 2:
        first, last = later
        growth = last.mib / first.mib
        rows[-1].baseline = f"{first.mib:.0f} MiB"
        rows[-1].ratio = f"{growth:.2f}x"
        rows[-1].target = "<= 1.10x"
        rows[-1].met = _met(growth <= 1.10)
    return rows


READ_TARGET = 2000  # requests/s per API process
P99_TARGET = 50.0  # ms


def _load_rows(run: LoadRun, single: LoadRun | None, cpus: int) -> list[Row]:
    """One route under load: its rate (against the 1-process run), latency and CPU cost."""
    plural = "process" if run.processes == 1 else "processes"
    logged = ", access log on" if run.access_log else ""
    name = f"load {run.database}, {run.processes} API {plural}{logged}: {run.route.label}"
    rate, wrk = run.wrk.rate, run.wrk
    errors = f", ERRORS: {wrk.error_kinds}" if wrk.errors else ""
    row = Row(f"{name} req/s (c={run.connections}{errors})", f"{rate:,.0f}")
    if single is not None:
        row.baseline = f"{single.wrk.rate:,.0f} ({'log off' if run.access_log else '1 proc'})"
        row.ratio = _ratio(rate, single.wrk.rate)
    latency = Row("  p50 / p99", f"{wrk.p50_ms:.1f} / {wrk.p99_ms:.1f} ms")
    if run.route.is_read:
        # wrk needs a CPU of its own, so a machine with no spare one cannot show the per-process
        # rate: the row then says so rather than failing the target.
        fits = cpus > run.processes
        row.target = f">= {READ_TARGET:,}/s a process"
        row.met = _met(rate >= READ_TARGET * run.processes and not wrk.errors) if fits else "n/a"
        latency.target = f"<= {P99_TARGET:.0f} ms p99"
        latency.met = _met(wrk.p99_ms <= P99_TARGET)
    cpu = f"{run.api_cpu_us:,.0f} us"
    if run.db_cpu_us is not None:
        cpu += f" + {run.db_cpu_us:,.0f} us PostgreSQL"
    return [row, latency, Row("  CPU per request", cpu)]


def load_rows(result: LoadResult) -> list[Row]:
    rows = []
    for run in result.runs:
        # Compared with one process, or (the access log run) with the same run without the log.
        single = next(
            (
                other
                for other in result.runs
                if other.processes == 1
                and (run.processes > 1 or run.access_log)
                and not other.access_log
                and (other.database, other.route) == (run.database, run.route)
            ),
            None,
        )
        rows += _load_rows(run, single, result.cpus)
    return rows


def build_rows(
    base: LoopResult, cli: CliResult, runs: list[ServeResult], rerun: LoopResult | None
) -> list[Row]:
    rows = [
        Row(f"baseline Playwright loop: shots/s (n={len(base.series)})", f"{base.series.rate:.2f}"),
        Row("baseline Playwright loop: p50 latency", f"{base.series.p50:.0f} ms"),
    ]
    if rerun is not None:
        # The same loop again after everything else: how much the machine drifted meanwhile.
        rows.append(
            Row(
                "baseline re-run at the end: shots/s",
                f"{rerun.series.rate:.2f}",
                f"{base.series.rate:.2f}",
                _ratio(rerun.series.rate, base.series.rate),
            )
        )
    if cli.series is not None:
        rows.append(
            Row(
                f"shot-scraper, one process per shot: shots/s (n={len(cli.series)})",
                f"{cli.series.rate:.2f}",
                f"{base.series.rate:.2f}",
                _ratio(cli.series.rate, base.series.rate),
            )
        )
    for run in runs:
        rows += _serve_rows(run, base, cli)
    return rows


def render(rows: list[Row]) -> str:
    header = Row("measure", "measured", "baseline", "ratio", "target", "met")
    table = [header, *rows]
    cells = [[r.name, r.figure, r.baseline, r.ratio, r.target, r.met] for r in table]
    widths = [max(len(row[i]) for row in cells) for i in range(6)]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
