"""How long a blob may be stored: the one rule every face and the node apply.

A client asks for ``epochs`` epochs from now: at least 1 and at most the network's
``max_epochs_ahead`` (a genesis network's decided state may change that bound). A node
takes a store or an extension only if its epoch is current (within one epoch of the node's,
clocks differ) and its end epoch lies after it and at most ``max_epochs_ahead`` ahead.
Each function returns the reason a request breaks the rule, or None: the caller raises its
own kind of error (a CLI line, an HTTP 400, a refusal on the wire).
"""

from __future__ import annotations


def epochs_problem(epochs: int, max_epochs_ahead: int) -> str | None:
    """Why a client's ``epochs`` (epochs from now) is refused, or None."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= max_epochs_ahead:
        return f"epochs must be between 1 and {max_epochs_ahead}, got {epochs}"
    return None


def period_problem(epoch: int, end_epoch: int, now: int, max_epochs_ahead: int) -> str | None:
    """Why a node refuses a store or extension for ``[epoch, end_epoch)`` at epoch ``now``, or None."""
    if abs(epoch - now) > 1:
        return f"epoch {epoch} is not current (now {now})"
    if end_epoch <= epoch or end_epoch - now > max_epochs_ahead:
        return f"end epoch {end_epoch} out of range (at most {max_epochs_ahead} epochs ahead of {now})"
    return None
