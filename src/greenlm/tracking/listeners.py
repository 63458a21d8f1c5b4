"""How integrations follow a tracking window without the tracker importing them: :class:`Listener`.

A listener is handed to ``EnergyTracker(listeners=[...])`` and told three things: the window
opened (``on_start``), a sample was taken (``on_sample``, from the sampling thread, with
each component's mean power over the last interval), and the window closed with its result
(``on_stop``). TensorBoard, MLflow, the serving monitor and the distributed tracker are
listeners. A listener that raises is recorded once in the run's warnings and never reaches
the user's job. Subclass :class:`Listener` (its methods do nothing) and override what you
need; any object with these three methods works too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from greenlm.tracking.result import RunResult


@runtime_checkable
class ListenerProtocol(Protocol):
    """What the tracker calls; see :class:`Listener`."""

    def on_start(self, tracker: Any) -> None: ...

    def on_sample(self, tracker: Any, t_s: float, powers_w: dict[str, float]) -> None: ...

    def on_stop(self, result: RunResult) -> None: ...


class Listener:
    """Base class of tracker listeners: every hook does nothing until overridden."""

    def on_start(self, tracker: Any) -> None:
        """The window opened (``tracker`` is the :class:`~greenlm.EnergyTracker`)."""

    def on_sample(self, tracker: Any, t_s: float, powers_w: dict[str, float]) -> None:
        """A sample at ``t_s`` seconds into the window; ``powers_w``: mean W per component."""

    def on_stop(self, result: RunResult) -> None:
        """The window closed; ``result`` is final (and stored, if the tracker stores)."""


def hooks(listeners: list[Any], name: str) -> list[Any]:
    """The ``name`` hook of every listener that has one (a listener may implement only some)."""
    out = []
    for lst in listeners:
        fn = getattr(lst, name, None)
        if callable(fn):
            out.append(fn)
    return out
