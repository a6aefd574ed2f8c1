"""A sampler for tests: trial ``n`` takes ``values[name][n]`` (cycling), so a test decides which configuration runs
when and nothing depends on luck."""

import optuna


class InOrder(optuna.samplers.BaseSampler):
    """Trial ``n`` takes ``values[name][n % len(values[name])]``."""

    def __init__(self, **values: list) -> None:
        self.values = values

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, distribution):
        return self.values[name][trial.number % len(self.values[name])]
