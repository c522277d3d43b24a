"""What a foreground sweep shows: live progress (clock k/N, ETA, last J/image) and the per-clock table."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sweepd.freqplan import ClockPoint
from sweepd.records.rows import SummaryRow, TrialRow


class ConsoleObserver:
    """Implements :class:`sweepd.engine.phases.Observer` for a terminal (or a plain log when piped)."""

    def __init__(self, console: Console, total_trials: int, trials_per_clock: int, simulated: bool):
        self.console = console
        self.tag = " [SIMULATED GPU]" if simulated else ""
        self.trials_per_clock = trials_per_clock
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("trials"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
                                 console=console, transient=True, refresh_per_second=2)
        self.task = self.progress.add_task("starting", total=total_trials, last="")

    def __enter__(self) -> "ConsoleObserver":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def clock_started(self, k: int, n: int, point: ClockPoint) -> None:
        self.progress.update(self.task, description=f"{point.noun} {k + 1}/{n} {point.label}{self.tag}")

    def trial_done(self, k: int, n: int, point: ClockPoint, row: TrialRow) -> None:
        last = f"last {row.j_per_image:.2f} J/image" if row.ok else "last trial FAILED"
        self.progress.update(self.task, advance=1, last=last)

    def clock_done(self, k: int, n: int, point: ClockPoint, summary: list[SummaryRow]) -> None:
        row = next((r for r in summary if r.setting == point.setting), None)
        if row is None:
            self.console.print(f"[{k + 1}/{n}] {point.label}: every trial failed")
            return
        self.console.print(f"[{k + 1}/{n}] {point.label}: {row.n} trials, {row.s_per_image_mean:.3f} s/image, "
                           f"{row.j_per_image_mean:.2f} J/image, {row.avg_power_w:.0f} W{self.tag}")


def summary_table(rows: list[SummaryRow], simulated: bool, title: str) -> Table:
    t = Table(title=title + (" - SIMULATED GPU" if simulated else ""), title_justify="left")
    power = any(r.power_limit_w is not None for r in rows)  # a power sweep: the limit, and where it put the clock
    for col in ("power limit W", "SM clock MHz") if power else ("clock MHz",):
        t.add_column(col, justify="right")
    for col in ("n", "s/image", "J/image", "95% CI", "W", "EDP", "energy vs max", "time vs max", "bound"):
        t.add_column(col, justify="right")
    for r in rows:
        clock = [] if not power else ["-" if r.sm_clock_mean_mhz is None else
                                      f"{r.sm_clock_mean_mhz:.0f} ± {r.sm_clock_std_mhz or 0:.0f}"]
        t.add_row(r.label, *clock, str(r.n), f"{r.s_per_image_mean:.3f} ± {r.s_per_image_std:.3f}",
                  f"{r.j_per_image_mean:.2f} ± {r.j_per_image_std:.2f}",
                  "-" if r.ci95_pct is None else f"±{r.ci95_pct:.1f}%",
                  f"{r.avg_power_w:.0f}", f"{r.edp:.3g}", f"{0.0 - r.energy_saving_pct_vs_max + 0.0:+.1f}%",
                  f"{r.time_change_pct_vs_max:+.1f}%", r.bound or "-")
    return t
