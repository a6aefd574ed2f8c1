"""Where a warning about the user's call should point: the first frame outside hyperbrace.

A fixed ``stacklevel`` is right for one call chain only: ``minimize`` reaches the same check directly, through
``maximize``, or through the wrapper that names misspelt keywords, and a fixed level then points at a line of
hyperbrace. Walking out of the package points at the user's own call, whichever way it came.
"""

from __future__ import annotations

import os
import sys

__all__ = ["user_stacklevel"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn``, called in the same function, that points at the user's code.

    Where no caller is outside hyperbrace (a worker's own loop), it points at the function that warns.

    >>> user_stacklevel()  # called from outside hyperbrace: the caller itself
    1
    """
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level if frame is not None else 1
