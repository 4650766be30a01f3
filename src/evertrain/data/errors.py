"""Errors raised by :mod:`evertrain.data`."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input to the data pipeline: the message names the field or file and the fix.

    A ``ValueError`` subclass, so callers that already catch ``ValueError`` keep working; the CLI
    prints the message and exits with code 2.
    """
