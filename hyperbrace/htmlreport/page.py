"""The report as one self-contained HTML page: plotly.js embedded (it opens offline), figures, tables, a little JS.

Plotly was chosen because Optuna's visualization module draws with it (the report reuses Optuna's plots instead of
drawing its own), and because one file with its JavaScript inlined opens anywhere: an e-mail attachment, a
cluster's shared disk, a notebook's output folder. The cost is size: about 4.7 MB of plotly.js per report.
"""

from __future__ import annotations

import datetime
import html
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hyperbrace.budget import is_reused
from hyperbrace.display import failure_groups, state_counts, trial_label
from hyperbrace.metric import Metric, metric_of
from hyperbrace.htmlreport.data import REUSED_COLUMN, best_config_code, best_trial, space_rows, trial_rows
from hyperbrace.htmlreport.plots import PLOTS, NoPlot

__all__ = ["render"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px 0;font-size:22px} header p{margin:2px 0;color:#cfd8dc}
nav{position:sticky;top:0;background:#eceff1;padding:8px 28px;border-bottom:1px solid #cfd8dc;z-index:10}
nav a{margin-right:14px;color:#263238;text-decoration:none;font-size:14px} nav a:hover{text-decoration:underline}
main{padding:10px 28px 40px 28px} section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;
margin:16px 0;padding:12px 18px} h2{font-size:18px;margin:6px 0 10px 0}
.live{background:#fff3cd;color:#664d03;padding:8px 28px;border-bottom:1px solid #ffe69c}
.none{color:#777;font-style:italic} pre{background:#f5f5f5;padding:10px;overflow-x:auto;border-radius:4px}
table{border-collapse:collapse;font-size:13px} th,td{border:1px solid #e0e0e0;padding:3px 7px;text-align:left;
white-space:nowrap;max-width:340px;overflow:hidden;text-overflow:ellipsis} th{background:#f0f3f5;position:sticky;top:37px}
table.sortable th{cursor:pointer} table.sortable th:after{content:" \\2195";color:#aaa}
tr.COMPLETE td:nth-child(2){color:#1f77b4} tr.PRUNED td:nth-child(2){color:#ff7f0e}
tr.FAIL td:nth-child(2){color:#d62728} tr.RUNNING td:nth-child(2){color:#2ca02c}
tr.reused td{background:#f3f0fa;color:#555} tr.reused td:nth-child(3){font-weight:600;color:#5e35b1}
table.versions td{white-space:normal;max-width:none;vertical-align:top} tr.current td{font-weight:600}
table.versions ul{margin:0;padding-left:18px;font-weight:normal}
.scroll{max-height:640px;overflow:auto} button{cursor:pointer} .plot{min-height:200px}
"""

_JS = """
function hbSort(th){
  const table=th.closest('table'), body=table.tBodies[0], col=[...th.parentNode.children].indexOf(th);
  const asc=th.dataset.order!=='asc'; [...th.parentNode.children].forEach(h=>delete h.dataset.order);
  th.dataset.order=asc?'asc':'desc';
  const key=r=>{const c=r.children[col]; const v=c.dataset.v!==undefined?c.dataset.v:c.textContent;
    const n=parseFloat(v); return (v!==''&&!isNaN(n)&&isFinite(v))?[0,n]:[v===''?2:1,v];};
  const rows=[...body.rows].sort((a,b)=>{const x=key(a),y=key(b); if(x[0]!==y[0])return x[0]-y[0];
    return (x[1]<y[1]?-1:x[1]>y[1]?1:0)*(asc?1:-1);}); rows.forEach(r=>body.appendChild(r));
}
function hbCopy(id,button){
  const text=document.getElementById(id).textContent;
  const done=()=>{button.textContent='Copied';setTimeout(()=>button.textContent='Copy',1500);};
  if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(text).then(done,()=>hbFallback(text,done));}
  else{hbFallback(text,done);}
}
function hbFallback(text,done){const t=document.createElement('textarea');t.value=text;document.body.appendChild(t);
  t.select();try{document.execCommand('copy');}catch(e){} document.body.removeChild(t);done();}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _cell(value: Any) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, float):
        shown = "nan" if math.isnan(value) else f"{value:.6g}"
        return f'<td data-v="{value!r}">{shown}</td>'
    text = str(value)
    return f'<td title="{_e(text)}">{_e(text)}</td>'


def _table(rows: list[dict[str, Any]], table_id: str, sortable: bool = True) -> str:
    if not rows:
        return '<p class="none">None yet.</p>'
    columns = list(rows[0])
    head = "".join(f'<th onclick="hbSort(this)">{_e(c)}</th>' if sortable else f"<th>{_e(c)}</th>" for c in columns)
    body = "\n".join(
        f'<tr class="{_e(row.get("state", ""))}{" reused" if row.get(REUSED_COLUMN) else ""}">'
        + "".join(_cell(row.get(c)) for c in columns) + "</tr>"
        for row in rows
    )
    cls = ' class="sortable"' if sortable else ""
    return (f'<div class="scroll"><table id="{table_id}"{cls}><thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table></div>")


def _figure_html(key: str, fig: Any) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{key}",
                       config={"displaylogo": False, "responsive": True})


def _versions_html(study: optuna.Study, metric: Metric) -> tuple[str, str]:
    """The Versions section (empty when the study has one version) and the header's line about versions."""
    from hyperbrace.versions import root_name, study_versions, version_number

    root = root_name(study)
    versions = study_versions(study._storage, root)
    if len(versions) < 2:
        return "", ""
    this = version_number(study)
    latest = versions[-1]
    which = (f"the latest of {len(versions)}" if latest.study_name == study.study_name
             else f"not the latest: version {latest.version} is {latest.study_name!r}")
    header = (f"Version {this} of study {root!r} ({which}): a new version starts each time the {{{{...}}}} "
              "templates change; see Versions")
    rows = []
    for v in versions:
        best = "" if v.best_loss is None else f"{metric.show(v.best_loss):.6g}"
        changes = ("<ul>" + "".join(f"<li>{_e(c)}</li>" for c in v.changes) + "</ul>" if v.changes
                   else ('<span class="none">the first version</span>' if v.version == versions[0].version
                         else '<span class="none">not recorded</span>'))
        current = ' class="current"' if v.study_name == study.study_name else ""
        rows.append(f"<tr{current}><td>{v.version}{' (this report)' if current else ''}</td><td>{_e(v.study_name)}</td>"
                    f"<td>{v.trials}</td><td>{v.reused}</td><td>{_e(best)}</td><td>{changes}</td></tr>")
    head = "".join(f"<th>{_e(c)}</th>" for c in
                   ("version", "Optuna study", "own trials", "reused", f"best {metric.name}", "what changed"))
    section = (f"<p>{len(versions)} versions of {_e(root)!s}. Reused trials are copies of earlier versions' trials "
               "that fit the new space: they warm-start its sampler and are not run or counted again.</p>"
               f'<table id="versions-table" class="versions"><thead><tr>{head}</tr></thead><tbody>'
               + "\n".join(rows) + "</tbody></table>")
    return section, header


def render(study: optuna.Study, directory: Path | None = None, description: str = "") -> str:
    """The report's HTML for ``study`` (trials as they are now; a running study's report is a snapshot)."""
    from plotly.offline import get_plotlyjs

    from hyperbrace.result import _pruning_savings

    metric = metric_of(study)
    trials = study.get_trials(deepcopy=False)
    own = [t for t in trials if not is_reused(t)]  # a version's own trials; reused ones ran in earlier versions
    best = best_trial(study)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    now = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")

    sections: list[tuple[str, str, str]] = []  # (anchor, title, inner html)
    code = best_config_code(study)
    sections.append(("best", "Best configuration", (
        '<button onclick="hbCopy(\'best-code\', this)">Copy</button>'
        f'<pre id="best-code">{_e(code)}</pre>'
    )))
    versions, versions_line = _versions_html(study, metric)
    if versions:
        sections.append(("versions", "Versions", versions))
    for key, title, plot in PLOTS:
        try:
            inner = f'<div class="plot" data-plot="{key}">{_figure_html(key, plot(study, metric))}</div>'
        except NoPlot as reason:
            inner = f'<p class="none" data-noplot="{key}">Not drawn: {_e(reason)}.</p>'
        sections.append((key, title, inner))
    rows = trial_rows(study, directory, metric)
    count = f"{len(own)}, and {len(trials) - len(own)} reused from earlier versions" if len(own) < len(trials) \
        else f"{len(rows)}"
    sections.append(("trials", f"Trials ({count}; click a column to sort)", _table(rows, "trials-table")))
    groups = failure_groups(trials)
    if groups:
        parts = []
        for g in groups:
            numbers = ", ".join(str(n) for n in g.numbers[:50]) + (" ..." if len(g.numbers) > 50 else "")
            parts.append(f"<h3>{len(g.numbers)} x {_e(g.key)}</h3><p>trials {_e(numbers)}; trial {g.numbers[0]}'s "
                         f"error (the whole traceback is in logs/trial-{g.numbers[0]:05d}.log):</p>"
                         f"<pre>{_e(g.example)}</pre>")
        failures = "\n".join(parts)
    else:
        failures = '<p class="none">No failed trials.</p>'
    sections.append(("failures", f"Failures ({sum(len(g.numbers) for g in groups)})", failures))
    saved = _pruning_savings(own)
    pruned = sum(t.state == TrialState.PRUNED for t in own)
    sections.append(("pruning", "Pruning", f"<p>{_e(saved)}</p>" if saved else
                     f'<p class="none">{"No trial was pruned" if not pruned else "No completed trial to compare with"}'
                     " yet.</p>"))
    sections.append(("space", "Search space", _table(space_rows(study), "space-table", sortable=False)))

    best_text = ("no completed trial yet" if best is None else
                 f"best {metric.name} {metric.show(best.value):.6g} (trial {trial_label(best)}"
                 + (", reused from an earlier version)" if is_reused(best) else ")"))
    counts = f"{len(own)} trials ({_e(state_counts(own)) or 'none yet'})"
    if len(own) < len(trials):
        counts += f", and {len(trials) - len(own)} reused from earlier versions"
    live = (f'<div class="live">The search was running when this report was written ({running} trial'
            f'{"s" if running != 1 else ""} running): it is a snapshot; write it again to see more.</div>'
            if running else "")
    nav = "".join(f'<a href="#{a}">{_e(t.split(" (")[0])}</a>' for a, t, _ in sections)
    body = "\n".join(f'<section id="{a}"><h2>{_e(t)}</h2>\n{inner}\n</section>' for a, t, inner in sections)
    direction = "maximized" if metric.maximized else "minimized"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hyperbrace report: {_e(study.study_name)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
<script type="text/javascript">{_JS}</script>
</head><body>
<header><h1>hyperbrace report: {_e(study.study_name)}</h1>
<p>{counts}; {_e(best_text)}; {_e(metric.name)} is {direction}</p>
{f"<p>{_e(versions_line)}</p>" if versions_line else ""}
<p>Study in {_e(description)}; written {now}</p></header>
{live}
<nav>{nav}</nav>
<main>
{body}
</main></body></html>
"""
