"""The one exception type users see.

Every mistake a user can make (a bad model spec, a malformed task file, a percentage
outside 0..100) raises :class:`InterpError` with a single line that names the bad value
and what is allowed.  The CLI prints that line and exits with code 2; nothing deep
inside torch ever reaches the terminal as a traceback.
"""

from __future__ import annotations

__all__ = ["InterpError", "check_choice"]


class InterpError(ValueError):
    """A user-facing error: one line, naming the bad input and what to do about it."""


def check_choice(name: str, value: object, allowed: "list | tuple | set | dict") -> None:
    """Raise :class:`InterpError` unless ``value`` is one of ``allowed``.

    >>> check_choice("protocol", "bansal", ["bansal", "olsson"])
    >>> check_choice("protocol", "other", ["bansal", "olsson"])
    Traceback (most recent call last):
    ...
    interp.errors.InterpError: unknown protocol 'other'; choose one of: bansal, olsson
    """
    if value not in allowed:
        choices = ", ".join(str(choice) for choice in allowed)
        raise InterpError(f"unknown {name} {value!r}; choose one of: {choices}")
