"""``hyperbrace show RUN [--top N] [--failures] [--space]``: a search's trial counts, its best trials, its errors,
or its search space."""

from __future__ import annotations

import argparse

import optuna

from hyperbrace.cli._target import UsageError, add_arguments, open_target

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    show = commands.add_parser(
        "show", help="print a search's summary and its best trials",
        description="Print a search's trial counts (every state: complete, pruned, fail, running, waiting) and a "
                    "table of its best trials; --failures adds the failed trials' errors, grouped.",
    )
    add_arguments(show)
    show.add_argument("--top", type=int, default=10, metavar="N", help="how many of the best trials to list (default 10)")
    show.add_argument("--failures", action="store_true", help="also list the failed trials' errors, grouped by error")
    show.add_argument("--space", action="store_true",
                      help="print the search space instead: every template's name, distribution and file:line")
    show.set_defaults(run=_show)


def _show(args: argparse.Namespace) -> int:
    from hyperbrace.display import failure_groups

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.top < 1:
        raise UsageError(f"--top {args.top}: give how many of the best trials to list, 1 or more (e.g. --top 5)")
    target = open_target(args)
    result = target.result()
    if args.space:
        print(result.search_space)
        return 0
    print(result.summary(top=args.top))
    versions = result.versions
    if len(versions) > 1:  # the study's space changed: list its versions (hyperbrace.versions)
        from hyperbrace.metric import metric_of

        metric = metric_of(result.study)
        print("\nVersions (a new one each time the templates changed):")
        for v in versions:
            best = "-" if v.best_loss is None else f"{metric.show(v.best_loss):.4g}"
            reused = f", {v.reused} reused" if v.reused else ""
            print(f"  version {v.version}: {v.study_name!r}, {v.trials} trials{reused}, best {metric.name} {best}")
            for change in v.changes:
                print(f"      {change}")
    if args.failures:
        groups = failure_groups(result.study.get_trials(deepcopy=False))
        if not groups:
            print("\nNo failed trials.")
        for group in groups:
            numbers = ", ".join(str(n) for n in group.numbers)
            print(f"\n{len(group.numbers)} failed with {group.key}\n  trials: {numbers}\n  e.g. trial "
                  f"{group.numbers[0]}:\n    " + group.example.replace("\n", "\n    "))
    return 0
