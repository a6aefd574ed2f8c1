"""A search that the fault-injection tests (tests/test_faults.py) run as a separate process, to kill or interrupt.

    python fault_search.py DIRECTORY MAX_EVALS N_JOBS

Environment (all optional):

* ``HB_FAULT_PAUSE``: the longest a trial sleeps, in seconds (each sleeps ``PAUSE * y`` for its value of ``y``);
* ``HB_FAULT_SLOW_ASK=<n>``: the sampler's ``before_trial`` for trial ``n`` (inside the search's claim of it)
  touches ``HB_FAULT_MARKER`` and sleeps 60 s; ``HB_FAULT_SLOW_RELATIVE=<n>``: the same in ``sample_relative``
  (at the trial's first template);
* ``HB_FAULT_RETRIES``: ``retries=``.

Prints ``finished <n>`` when ``minimize`` returns.
"""

import os
import sys
import time
from pathlib import Path

import optuna

from hyperbrace import minimize


class SlowSampler(optuna.samplers.RandomSampler):
    """A random sampler that can be made to hang where the tests interrupt it."""

    def _maybe_hang(self, variable: str, number: int) -> None:
        if os.environ.get(variable) == str(number):
            Path(os.environ["HB_FAULT_MARKER"]).write_text(str(number))
            time.sleep(60)  # the test interrupts it long before

    def before_trial(self, study, trial):
        self._maybe_hang("HB_FAULT_SLOW_ASK", trial.number)
        super().before_trial(study, trial)

    def sample_relative(self, study, trial, search_space):
        self._maybe_hang("HB_FAULT_SLOW_RELATIVE", trial.number)
        return super().sample_relative(study, trial, search_space)


def objective(pause):
    x = {{uniform(-3, 3)}}
    y = {{uniform(0, 1)}}
    time.sleep(pause * y)
    return (x - 1) ** 2 + y


if __name__ == "__main__":
    directory, max_evals, n_jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    result = minimize(
        objective, lambda: float(os.environ.get("HB_FAULT_PAUSE", "0.2")), max_evals=max_evals, n_jobs=n_jobs,
        directory=directory, study_name="faults", algo=SlowSampler(seed=0), prune=None, show_progress=False,
        retries=int(os.environ.get("HB_FAULT_RETRIES", "1")),
    )
    print("finished", len(result.study.trials), flush=True)
