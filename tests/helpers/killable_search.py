"""A search script that tests run as a separate process: the first run is killed (SIGKILL) while a trial runs,
and running the same script again must finish the search.

    python killable_search.py <directory> <max_evals>

With ``HB_TEST_HANG_AT=<n>`` in the environment, trial ``n`` writes its value to the file named by
``HB_TEST_MARKER`` and then hangs, so that the test knows when to kill the process.
"""

import os
import sys
import time
from pathlib import Path

from hyperbrace import current_trial, minimize


def objective():
    x = {{uniform(-3, 3)}}
    hang_at = os.environ.get("HB_TEST_HANG_AT")
    if hang_at is not None and current_trial().number == int(hang_at):
        Path(os.environ["HB_TEST_MARKER"]).write_text(repr(x))
        time.sleep(300)  # the test kills the process long before this ends
    return (x - 1) ** 2


if __name__ == "__main__":
    minimize(objective, max_evals=int(sys.argv[2]), directory=sys.argv[1], seed=0, show_progress=False)
