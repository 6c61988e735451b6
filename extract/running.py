"""One interface for the engine's running state, after torchmetrics' ``Metric`` and the
running statistics of davidbau/dissect.

Every statistic the engine accumulates over a stream of images (``ThresholdSelect`` and
``ThresholdRefine`` in quantile.py; ``ActivationStats``, ``TopImages`` and ``ConceptTally`` in
tally.py) has the same four methods:

- ``update(...)``: add a batch (the arguments are the statistic's own);
- ``merge(other)``: add another shard's state, so that merging the states of disjoint parts of
  the data gives the state of one pass over all of it (tests/test_running.py checks this);
- ``state_dict()``: plain tensors, numbers and lists (``torch.load(weights_only=True)`` reads
  them back), for the checkpoint and for the sync between processes;
- ``load_state_dict(state)``: the inverse; ``restored`` builds an object from a state alone.

So the engine needs one checkpoint format (``{layer: {name: state_dict}}``) and
extract/distributed.py one sync (gather every process's state_dict, merge in rank order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar


class Running(Protocol):
    @property
    def update(self) -> Callable[..., None]: ...  # each statistic's own arguments

    def merge(self, other: Any) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


R = TypeVar("R", bound=Running)


def restored(kind: type[R], state: dict[str, Any]) -> R:
    """An object of ``kind`` holding ``state`` (on the CPU): each ``load_state_dict`` sets every
    attribute, shapes included, so no constructor arguments are needed."""
    out = kind.__new__(kind)
    out.load_state_dict(state)
    return out
