"""hyperbrace: hyperparameter search for neural networks, written the Hyperas way.

Write the model as usual, put ``{{uniform(0, 1)}}`` or ``{{choice([256, 512, 1024])}}`` where a hyperparameter goes,
give a ``data()`` function that runs once, and call :func:`minimize`::

    from hyperbrace import minimize, choice, uniform, STATUS_OK

    def create_model(x_train, y_train, x_val, y_val):
        ...
        model.add(Dropout({{uniform(0, 1)}}))
        ...
        return {"loss": -accuracy, "status": STATUS_OK, "model": model}

    best_run, best_model = minimize(create_model, data, max_evals=50)

The search engine is Optuna: the study is an ordinary Optuna study (``result.study``).
"""

from hyperbrace._context import Pruned, current_trial, report, should_prune
from hyperbrace.result import SearchResult
from hyperbrace.run import evaluate, maximize, minimize
from hyperbrace.space import (
    choice,
    loguniform,
    lognormal,
    normal,
    pchoice,
    qloguniform,
    qlognormal,
    qnormal,
    quniform,
    randint,
    uniform,
    uniformint,
)
from hyperbrace.search import TrialFailedError
from hyperbrace.integrations.tracking import summary_writer
from hyperbrace.template import TemplateError, install_excepthook
from hyperbrace.trial import STATUS_FAIL, STATUS_OK

__version__ = "0.1.0"

# A template outside any function (module level) stops Python with "unhashable type: 'set'" before a search can
# start; the hook adds the TemplateError saying where templates may be written (chained to any previous hook).
install_excepthook()

__all__ = [
    "minimize",
    "maximize",
    "evaluate",
    "SearchResult",
    "choice",
    "pchoice",
    "uniform",
    "quniform",
    "loguniform",
    "qloguniform",
    "normal",
    "qnormal",
    "lognormal",
    "qlognormal",
    "randint",
    "uniformint",
    "STATUS_OK",
    "STATUS_FAIL",
    "report",
    "should_prune",
    "Pruned",
    "current_trial",
    "summary_writer",
    "TemplateError",
    "TrialFailedError",
]
