"""One guarded query in its own process, for the explorer: a pickled request on stdin, a pickled
``("ok", SqlResult)`` or ``("error", sentence)`` on stdout. Over its time or memory budget the
process ends itself with one error line on stderr (``warehouse.sql_watchdog``)."""

from __future__ import annotations

import pickle
import sys

from base.errors import LceError
from warehouse.sql_guard import run_sql
from warehouse.sql_watchdog import exit_with


def main() -> None:
    request = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 (from our own parent)
    try:
        answer: tuple[str, object] = ("ok", run_sql(**request, die=exit_with))
    except LceError as exc:
        answer = ("error", str(exc))
    sys.stdout.buffer.write(pickle.dumps(answer))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
