"""What a search shows: the progress bar during it and the table of best trials after it."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from hyperbrace.metric import Metric
from hyperbrace.budget import REUSED_ATTR, may_be_best

__all__ = ["trial_label", "trials_table", "space_table", "state_counts", "failure_groups", "FailureGroup", "Progress"]


def _cell(value: Any, width: int = 28) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def trials_table(trials: Sequence[optuna.trial.FrozenTrial], top: int = 5, metric: Metric | None = None) -> str:
    """A plain-text table of the ``top`` best completed trials, with their parameters' real values.

    >>> import optuna
    >>> study = optuna.create_study()
    >>> study.add_trial(optuna.trial.create_trial(value=0.25, user_attrs={"hb.values": {"lr": 0.01}}))
    >>> print(trials_table(study.trials))
    trial  loss  lr
    -----  ----  ----
    0      0.25  0.01
    """
    completed = sorted((t for t in trials if may_be_best(t)), key=lambda t: t.value)[:top]
    if not completed:
        return "(no completed trials)"
    names: list[str] = []
    for trial in completed:
        for name in trial.user_attrs.get("hb.values", trial.params):
            if name not in names:
                names.append(name)
    metric = metric or Metric()
    header = ["trial", metric.name, *names]
    rows = [
        [trial_label(t), _cell(metric.show(t.value)), *(_cell(t.user_attrs.get("hb.values", t.params).get(n, "-")) for n in names)]
        for t in completed
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    table = [header, ["-" * w for w in widths], *rows]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines)


def _where(filename: str, line: int) -> str:
    """``file:line``, the file relative to the working directory when it is under it."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        relative = filename
    return f"{relative if not relative.startswith('..') else os.path.basename(filename)}:{line}"


def space_table(entries: Sequence[Mapping[str, Any]]) -> str:
    """The search space as a short table: each template's name, distribution and where it is (``file:line``).

    Names from the weakest rules (a distribution's name, a builtin such as ``range``) are flagged with ``*`` and a
    one-line hint.

    >>> print(space_table([
    ...     {"name": "units", "distribution": "choice([32, 64])", "file": "model.py", "line": 12, "weak": False},
    ...     {"name": "range", "distribution": "choice([1, 2, 3])", "file": "model.py", "line": 14, "weak": True},
    ... ]))
    Search space: 2 parameters
    name    distribution       where
    ------  -----------------  -----------
    units   choice([32, 64])   model.py:12
    range*  choice([1, 2, 3])  model.py:14
    * named by a fallback rule; write name="..." in the template for a clear best_run key, e.g. {{choice([...], name="n_layers")}}
    """
    if not entries:
        return "Search space: no {{...}} templates recorded"
    header = ["name", "distribution", "where"]
    rows = [
        [e["name"] + ("*" if e.get("weak") else ""), _cell(e["distribution"], 40), _where(e["file"], e["line"])]
        for e in entries
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [f"Search space: {len(entries)} parameter{'s' * (len(entries) != 1)}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, ["-" * w for w in widths], *rows]]
    if any(e.get("weak") for e in entries):
        lines.append('* named by a fallback rule; write name="..." in the template for a clear best_run key, '
                     'e.g. {{choice([...], name="n_layers")}}')
    return "\n".join(lines)
def trial_label(trial: optuna.trial.FrozenTrial) -> str:
    """A trial's number; a trial reused from an earlier version shows where it ran: ``v1:12``.

    >>> from optuna.trial import create_trial
    >>> study = optuna.create_study()
    >>> study.add_trials([create_trial(value=1.0), create_trial(value=0.5, user_attrs={REUSED_ATTR: {"version": 1, "trial": 12}})])
    >>> [trial_label(t) for t in study.trials]
    ['0', 'v1:12']
    """
    source = trial.user_attrs.get(REUSED_ATTR)
    if isinstance(source, dict):
        return f"v{source.get('version', '?')}:{source.get('trial', '?')}"
    return str(trial.number)


def state_counts(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    """How many trials are in each state; the numbers add up to ``len(trials)`` (queued trials are "waiting").

    >>> from optuna.trial import create_trial, TrialState
    >>> state_counts([create_trial(value=1.0), create_trial(state=TrialState.FAIL), create_trial(value=2.0)])
    '2 complete, 1 fail'
    """
    order = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)
    counts = {state: 0 for state in order}
    for trial in trials:
        counts[trial.state] += 1
    return ", ".join(f"{n} {s.name.lower()}" for s, n in counts.items() if n)


@dataclass(frozen=True)
class FailureGroup:
    """Failed trials that failed with the same error."""

    key: str  #: the error's type and message (the last line of the stored error)
    numbers: list[int]  #: the trials' numbers, in order
    example: str  #: the first one's stored error (where in the user's code, and the message)


def failure_groups(trials: Sequence[optuna.trial.FrozenTrial]) -> list[FailureGroup]:
    """The failed trials grouped by error, the most frequent first.

    >>> from optuna.trial import create_trial, TrialState
    >>> fails = [create_trial(state=TrialState.FAIL, user_attrs={"hb.error": e})
    ...          for e in ("ValueError: x", "OSError: disk", "ValueError: x")]
    >>> [(g.key, len(g.numbers)) for g in failure_groups(fails)]
    [('ValueError: x', 2), ('OSError: disk', 1)]
    """
    groups: dict[str, FailureGroup] = {}
    for trial in trials:
        if trial.state != TrialState.FAIL:
            continue
        error = str(trial.user_attrs.get("hb.error") or "failed (no error was recorded)")
        lines = [line for line in error.strip().splitlines() if line.strip()]
        key = lines[-1].strip() if lines else error
        group = groups.setdefault(key, FailureGroup(key, [], error))
        group.numbers.append(trial.number)
    return sorted(groups.values(), key=lambda g: (-len(g.numbers), g.numbers[0]))


def _tqdm() -> Any:
    if "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401  (tqdm's notebook bar needs it)

            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm


class Progress:
    """A progress bar over the whole budget: trials done, best loss, ETA (tqdm; a widget in notebooks)."""

    def __init__(self, total: int, done: int, best: float | None, enabled: bool, label: str,
                 metric: Metric | None = None) -> None:
        self.best = best
        self.metric = metric or Metric()
        self.bar = None
        if enabled and done < total:
            self.bar = _tqdm()(total=total, initial=done, desc=label, unit="trial", dynamic_ncols=True, file=sys.stderr)
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None and self.best is not None:
            self.bar.set_postfix_str(f"best {self.metric.name} {self.metric.show(self.best):.4g}")

    def advance(self, done: int, best: float | None) -> None:
        if best is not None and math.isfinite(best) and (self.best is None or best < self.best):
            self.best = best
            self._postfix()
        if self.bar is not None and done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def quiet_optuna_logs(unless: bool = False) -> Iterator[None]:
    """Hide Optuna's INFO lines ("A new study created...") for the block: they repeat what the progress bar
    shows. ``unless=True`` (a verbose search) keeps them. The previous verbosity is restored after.

    >>> import optuna
    >>> with quiet_optuna_logs():
    ...     optuna.logging.get_verbosity() >= optuna.logging.WARNING
    True
    """
    previous = optuna.logging.get_verbosity()
    if not unless:
        optuna.logging.set_verbosity(max(previous, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)
