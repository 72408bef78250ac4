"""Progress lines of the CLI's in-process runs: each step as it finishes, with its time and one key figure.

A refresh takes minutes; without this the shell shows nothing between "refreshing ..." and the summary. The
lines come from the run's own event log, read by a watcher thread (``Progress.watch``) that polls the instance
with a cursor: that sees every step whatever the executor runs it in (this process or a child process), and
costs one small indexed query every ``interval`` seconds. On a terminal a live line also shows the step(s)
still running, rewritten in place; on a pipe or a file only whole lines are written (no ``\\r``, no ANSI).

The formatting is pure functions over ``StepEvent`` (an event reduced to plain values), so it is tested
without a Dagster run; ``step_event`` is the one place that reads Dagster's event records.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, TextIO

import dagster as dg

from refresh_assets.assets.candidates import candidate_asset_name
from refresh_assets.assets.champion import CHAMPION
from refresh_assets.assets.comparison import COMPARISON
from refresh_assets.assets.dataset import DATASET
from refresh_assets.assets.drift import DRIFT
from refresh_assets.assets.population import POPULATION
from refresh_assets.assets.realtime import REALTIME
from refresh_assets.assets.scoring import SCORES, SHADOW

#: Seconds between two reads of the run's events (and two refreshes of the live line).
POLL_SECONDS = 0.5
#: What the watcher reads: step boundaries and what a step produced; never the (many) log messages.
WATCHED_EVENTS = {
    dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_SKIPPED, dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED,
    dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION,
}
STEP_WIDTH = 24  # the longest step names (candidate_random_forest, training_dataset_checks) still fit
ERROR_CHARS = 100  # a failure's line shows the start of its message; failure_summary prints it whole
CLEAR_LINE = "\r\x1b[K"  # back to column 0 and erase: only ever written to a terminal


# ---------------------------------------------------------------- events as plain values


@dataclass(frozen=True)
class StepEvent:
    """One run event reduced to what a progress line needs (``kind`` is a DagsterEventType value)."""

    kind: str
    step: str | None
    timestamp: float
    asset: str | None = None  # ASSET_MATERIALIZATION, ASSET_CHECK_EVALUATION
    metadata: dict = field(default_factory=dict)  # a materialization's metadata, plain values
    check: str | None = None  # ASSET_CHECK_EVALUATION
    passed: bool | None = None
    seconds: float | None = None  # STEP_SUCCESS: the step's own duration
    error: str | None = None  # STEP_FAILURE, STEP_UP_FOR_RETRY


@dataclass
class FinishedStep:
    """A step that ended (or is up for retry), with what it materialized and checked, ready to print."""

    step: str
    outcome: str  # "success", "failure", "skipped" or "retry"
    seconds: float | None = None
    materializations: dict[str, dict] = field(default_factory=dict)  # asset -> metadata
    checks: list[tuple[str, bool]] = field(default_factory=list)  # (check name, passed)
    error: str | None = None


def _plain(value):
    """A MetadataValue's value (JSON data, a path string, a number...), anything else as is."""
    return getattr(value, "value", value)


def _error_text(error) -> str | None:
    """The message a user needs from a SerializableErrorInfo: its cause's when it wraps one (as failure_summary)."""
    if error is None:
        return None
    if getattr(error, "cause", None) is not None:
        error = error.cause
    return (getattr(error, "message", None) or str(error)).strip()


def step_event(entry) -> StepEvent | None:
    """A Dagster EventLogEntry as a StepEvent (None for events without a Dagster event)."""
    event = entry.dagster_event
    if event is None:
        return None
    kind = event.event_type_value
    data = event.event_specific_data
    base = {"kind": kind, "step": event.step_key, "timestamp": float(entry.timestamp)}
    if kind == dg.DagsterEventType.ASSET_MATERIALIZATION.value:
        materialization = event.step_materialization_data.materialization
        return StepEvent(**base, asset=materialization.asset_key.to_user_string(),
                         metadata={k: _plain(v) for k, v in (materialization.metadata or {}).items()})
    if kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION.value:
        return StepEvent(**base, asset=data.asset_key.to_user_string(), check=data.check_name,
                         passed=bool(data.passed))
    if kind == dg.DagsterEventType.STEP_SUCCESS.value:
        return StepEvent(**base, seconds=data.duration_ms / 1000 if data and data.duration_ms is not None else None)
    if kind in (dg.DagsterEventType.STEP_FAILURE.value, dg.DagsterEventType.STEP_UP_FOR_RETRY.value):
        user_failure = getattr(data, "user_failure_data", None)  # a dg.Failure: its description says it best
        return StepEvent(**base, error=(getattr(user_failure, "description", None)
                                        or _error_text(getattr(data, "error", None))))
    return StepEvent(**base)


class StepTracker:
    """Folds a run's events, in order, into finished steps; knows which steps are running and since when."""

    def __init__(self) -> None:
        self.running: dict[str, float] = {}  # step -> start timestamp
        self._open: dict[str, FinishedStep] = {}

    def _step(self, name: str) -> FinishedStep:
        return self._open.setdefault(name, FinishedStep(step=name, outcome="running"))

    def feed(self, event: StepEvent) -> FinishedStep | None:
        """Take one event; return the step it ends, if it ends one."""
        if event.step is None:
            return None
        kind = event.kind
        if kind in ("STEP_START", "STEP_RESTARTED"):
            self.running[event.step] = event.timestamp
            self._open[event.step] = FinishedStep(step=event.step, outcome="running")
            return None
        if kind == "ASSET_MATERIALIZATION":
            self._step(event.step).materializations[event.asset or "?"] = dict(event.metadata)
            return None
        if kind == "ASSET_CHECK_EVALUATION":
            self._step(event.step).checks.append((event.check or "?", bool(event.passed)))
            return None
        outcome = {"STEP_SUCCESS": "success", "STEP_FAILURE": "failure", "STEP_SKIPPED": "skipped",
                   "STEP_UP_FOR_RETRY": "retry"}.get(kind)
        if outcome is None:
            return None
        done = self._open.pop(event.step, None) or FinishedStep(step=event.step, outcome=outcome)
        started = self.running.pop(event.step, None)
        done.outcome, done.error = outcome, event.error
        if event.seconds is not None:
            done.seconds = event.seconds
        elif started is not None:
            done.seconds = max(0.0, event.timestamp - started)
        return done


# ---------------------------------------------------------------- the key figure of each step


def _candidate(meta: dict) -> str:
    if meta.get("status") == "failed":
        return f"training failed: {meta.get('error', '')}".strip()
    return f"CV ROC AUC {float(meta['cv_roc_auc']):.4f}"


def _comparison(meta: dict) -> str:
    return f"{str(meta['decision']).upper()}, best challenger {meta.get('best_challenger') or 'none'}"


def _champion(meta: dict) -> str:
    if meta.get("action") == "rollback" or meta.get("rolled_back"):
        return f"v{meta['version']} again (rollback from v{meta.get('previous_version')})"
    return f"v{meta['version']} ({meta.get('algorithm', '?')}) {'promoted' if meta['promoted'] else 'kept'}"


def _drift(meta: dict) -> str:
    names = meta.get("drifted_column_names") or []
    return f"drift {'YES' if meta['dataset_drift'] else 'no'}" + (f": {', '.join(map(str, names))}" if names else "")


def _shadow(meta: dict) -> str:
    previous = meta.get("previous_version")
    if previous is None or previous == -1:
        return "first champion, nothing to compare"
    return (f"rank corr {float(meta['spearman_rank_correlation']):.3f} "
            f"(v{previous} -> v{meta.get('new_version', '?')})")


#: The figure a materialization of each asset shows, from its metadata (see each asset's MaterializeResult).
FIGURES: dict[str, Callable[[dict], str]] = {
    DATASET: lambda m: f"train {m['train_rows']} / holdout {m['holdout_rows']} / scoring {m['scoring_rows']} rows",
    COMPARISON: _comparison,
    CHAMPION: _champion,
    POPULATION: lambda m: f"{m['rows']} rows",
    SCORES: lambda m: f"{m['rows']} rows scored with v{m['champion_version']}",
    DRIFT: _drift,
    SHADOW: _shadow,
    REALTIME: lambda m: ("off (REFRESH_ASSETS_REALTIME)" if m.get("enabled") is False else
                         f"v{m['champion_version']} as {m['runtime']}, max diff {m['max_abs_diff']:.1e}, "
                         f"p99 {m['p99_ms']:.1f} ms, published"),
}


def figure_of(asset: str, metadata: dict) -> str:
    """The key figure of one materialization; "" when the asset is unknown or its metadata lacks the keys."""
    render = _candidate if asset.startswith(candidate_asset_name("")) else FIGURES.get(asset)
    if render is None:
        return ""
    try:
        return render(metadata)
    except Exception:  # metadata of another shape (an older run, a changed asset): the line keeps step + time
        return ""


def _checks_figure(checks: list[tuple[str, bool]]) -> str:
    failed = [name for name, passed in checks if not passed]
    if not failed:
        return f"passed {len(checks)}/{len(checks)} rules"
    return f"failed {', '.join(failed)} (passed {len(checks) - len(failed)}/{len(checks)} rules)"


def key_figure(done: FinishedStep) -> str:
    """What the line says after the time: the outcome when it is not a success, else the step's figure."""
    if done.outcome == "skipped":
        return "skipped"
    failed_checks = [c for c in done.checks if not c[1]]
    if done.outcome in ("failure", "retry"):
        head = "FAILED" if done.outcome == "failure" else "failed, up for retry"
        if failed_checks and not done.materializations:
            return f"{head}: {_checks_figure(done.checks)}"
        error = (done.error or "").splitlines()[0] if done.error else ""
        if len(error) > ERROR_CHARS:
            error = error[:ERROR_CHARS - 3] + "..."
        return f"{head}: {error}" if error else head
    figures = [f for f in (figure_of(asset, meta) for asset, meta in done.materializations.items()) if f]
    if not done.materializations and done.checks:  # a checks-only step (training_dataset_checks)
        figures.append(_checks_figure(done.checks))
    return "; ".join(figures)


def format_step(done: FinishedStep) -> str:
    """``  training_dataset          3.1s  train 95467 / holdout 21436 / scoring 10722 rows``"""
    seconds = f"{done.seconds:.1f}s" if done.seconds is not None else ""
    line = f"  {done.step:<{STEP_WIDTH}}{seconds:>6}"
    figure = key_figure(done)
    return f"{line}  {figure}" if figure else line


def format_run_header(job_name: str, partition: str | None, run_id: str, trigger: str | None = None) -> str:
    """The line before a run's steps: which job, which day, which run (and which sensor asked for it)."""
    where = f" {partition}" if partition else ""
    why = f", requested by {trigger}" if trigger else ""
    return f"  > {job_name}{where} (run {run_id[:8]}{why})"


def live_text(running: dict[str, float], now: float, width: int | None = None) -> str:
    """The live line: the step(s) still running and for how long, cut to the terminal's width."""
    if not running:
        return ""
    parts = [f"{step} running {max(0, int(now - started))}s" for step, started in running.items()]
    text = "  ... " + ", ".join(parts)
    if width is not None and len(text) > width - 1:
        text = text[:max(0, width - 4)] + "..."
    return text


# ---------------------------------------------------------------- the printer and the watcher


class Progress:
    """Writes progress lines to ``stream``; with ``live`` (default: the stream is a terminal) also the live line.

    Lines and the live line come from the watcher thread and the caller's thread: a lock keeps them whole.
    """

    def __init__(self, stream: TextIO | None = None, live: bool | None = None,
                 interval: float = POLL_SECONDS) -> None:
        self.stream = stream if stream is not None else sys.stdout
        if live is None:
            isatty = getattr(self.stream, "isatty", None)
            live = bool(isatty()) if callable(isatty) else False
        self.live = live
        self.interval = interval
        self._lock = threading.Lock()
        self._live_shown = False
        self._live_text = ""

    @classmethod
    def for_cli(cls, verbose: bool = False) -> Progress:
        """On stdout; no live line under --verbose, where Dagster's own log lines would tear it."""
        return cls(sys.stdout, live=False if verbose else None)

    def _clear_live_locked(self) -> None:
        if self._live_shown:
            self.stream.write(CLEAR_LINE)
            self._live_shown = False

    def line(self, text: str) -> None:
        """One whole line (the live line, if shown, is cleared first and comes back on the next tick)."""
        with self._lock:
            self._clear_live_locked()
            self.stream.write(text + "\n")
            self.stream.flush()

    def show_live(self, text: str) -> None:
        """Rewrite the live line in place; nothing at all when not live."""
        if not self.live:
            return
        with self._lock:
            if not text:
                self._clear_live_locked()
            elif not self._live_shown or text != self._live_text:  # a second's change, not every tick
                self.stream.write("\r" + text + "\x1b[K")
                self._live_shown, self._live_text = True, text
            self.stream.flush()

    def clear_live(self) -> None:
        with self._lock:
            self._clear_live_locked()
            self.stream.flush()

    def step(self, done: FinishedStep) -> None:
        self.line(format_step(done))

    @contextmanager
    def watch(self, instance: dg.DagsterInstance, run_id: str, job_name: str, partition: str | None = None,
              trigger: str | None = None) -> Iterator[RunWatcher]:
        """Print the run's steps as they finish while the body executes the run ``run_id``; every step is
        printed before this returns (a last read after the run), and the live line is cleared."""
        self.line(format_run_header(job_name, partition, run_id, trigger))
        watcher = RunWatcher(instance, run_id, self)
        watcher.start()
        try:
            yield watcher
        finally:
            watcher.finish()


class RunWatcher(threading.Thread):
    """Reads a run's new step events every ``progress.interval`` seconds (a cursor: each read is only what is new)."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, progress: Progress) -> None:
        super().__init__(name=f"progress-{run_id[:8]}", daemon=True)
        self.instance = instance
        self.run_id = run_id
        self.progress = progress
        self.tracker = StepTracker()
        self.cursor: str | None = None
        self.read_errors = 0
        self._stopping = threading.Event()

    def poll(self) -> int:
        """Print the steps that ended since the last read; returns how many events were read."""
        connection = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, of_type=WATCHED_EVENTS)
        self.cursor = connection.cursor
        for record in connection.records:
            try:
                event = step_event(record.event_log_entry)
            except Exception:  # an event of a shape this Dagster version did not have: skip it, keep the others
                event = None
            done = self.tracker.feed(event) if event is not None else None
            if done is not None:
                self.progress.step(done)
        return len(connection.records)

    def _poll_quietly(self) -> None:
        try:
            self.poll()
        except Exception:  # e.g. a busy SQLite file: read again next tick; progress must never fail the run
            self.read_errors += 1

    def run(self) -> None:
        while not self._stopping.wait(self.progress.interval):
            self._poll_quietly()
            if self.progress.live:
                self.progress.show_live(live_text(self.tracker.running, time.time(),
                                                  shutil.get_terminal_size().columns))

    def finish(self) -> None:
        """Stop polling, read what the run wrote last, clear the live line."""
        self._stopping.set()
        self.join()
        self._poll_quietly()
        self.progress.clear_live()


def new_run_id() -> str:
    """A run id made here, given to execute_in_process, so the watcher knows the run before it starts
    (what dagster's own make_new_run_id returns)."""
    return str(uuid.uuid4())
