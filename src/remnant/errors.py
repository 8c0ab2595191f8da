"""The one exception type that reaches users.

Every problem with user input (sample sheet, config, count matrix, annotation) is raised as
:class:`InputError`. Its message names the file, the row or field, the offending value and what
to do, so that the workflow can print it as one line without a Python traceback.
"""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Bad user input.

    Parameters
    ----------
    message
        What is wrong and what is allowed / what to do.
    path
        The file the problem is in (prefixed to the message).
    where
        Row, column or config key (e.g. ``"row 3 (sample P1_dx_HSC), column 'timepoint'"``).
    """

    def __init__(self, message: str, *, path: str | PathLike | None = None, where: str | None = None):
        self.path = None if path is None else str(path)
        self.where = where
        self.detail = message
        prefix = ""
        if self.path is not None:
            prefix += f"{self.path}: "
        if where:
            prefix += f"{where}: "
        super().__init__(prefix + message)
