"""A model function in an importable module: its globals, helpers and imports must resolve after rewriting."""

import math as _math

WIDTHS = (8, 16)  # a module global the template refers to


def _scaled(value):
    return value * 10


def create_model(offset=0.0):
    width = {{choice(WIDTHS)}}
    rate = _scaled({{uniform(0, 1)}})
    return {"loss": _math.fabs(rate - 5) + offset, "width": width}
