"""The HTML report of a search (``hyperbrace report RUN``, ``result.report(path)``) and its Plotly figures.

Needs Plotly and pandas: ``pip install hyperbrace[report]``. The rest of hyperbrace never imports this package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna

__all__ = ["write_report", "figure", "require_report_libraries"]

INSTALL = "pip install 'hyperbrace[report]'  (or: pip install plotly pandas)"


def require_report_libraries() -> None:
    """Raise an ImportError naming the install command when Plotly or pandas is missing."""
    missing = []
    for name in ("plotly", "pandas"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"the report needs {' and '.join(missing)}: {INSTALL}")


def write_report(
    study: optuna.Study, path: str | os.PathLike[str], directory: Path | None = None, description: str = ""
) -> Path:
    """Write ``study``'s report to ``path`` (one HTML file that opens offline); returns the path.

    >>> import tempfile, optuna
    >>> study = optuna.create_study(study_name="demo")
    >>> study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
    >>> out = write_report(study, tempfile.mkdtemp() + "/report.html")
    >>> text = out.read_text()
    >>> "hyperbrace report: demo" in text and 'id="plot-history"' in text and "<script src=" not in text
    True
    """
    require_report_libraries()
    from hyperbrace.htmlreport.page import render

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render(study, directory, description or study.study_name)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)  # a browser reloading it never reads half a report
    return out


def figure(study: optuna.Study, key: str) -> Any:
    """One of the report's Plotly figures: "history", "importances", "parallel", "slices", "curves", "timeline".

    Raises ValueError with the reason when the study cannot have that figure yet (e.g. no completed trial).
    """
    require_report_libraries()
    from hyperbrace.metric import metric_of
    from hyperbrace.htmlreport.plots import PLOTS, NoPlot

    plots = {k: plot for k, _, plot in PLOTS}
    if key not in plots:
        raise ValueError(f"no figure {key!r}; the report has: {', '.join(plots)}")
    try:
        return plots[key](study, metric_of(study))
    except NoPlot as reason:
        raise ValueError(f"{key}: {reason}") from None
