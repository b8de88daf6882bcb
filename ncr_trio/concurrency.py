"""Small structured-concurrency helpers shared by the layers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


@contextmanager
def collapse_groups() -> Iterator[None]:
    """Re-raise the first real error of a nursery's exception group as itself.

    Trio nurseries wrap whatever their tasks raise in an ExceptionGroup; callers of a use case
    expect the domain error (a RegistryError, a disconnect) that caused it, not the wrapper.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        real = [e for e in leaves if not isinstance(e, trio.Cancelled)] or leaves
        raise real[0] from None


__all__ = ["collapse_groups"]
