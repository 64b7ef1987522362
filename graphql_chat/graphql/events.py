"""One execution per subscription event, whatever the number of subscribers.

An event of a chat goes to every subscriber of that chat as the same object. Subscribers that
sent the same document with the same variables would each execute it on that object and get
the same result; `SharedEvents` executes it once and hands the others that result. The key is
the event, the operation (the document cache gives one parsed document per query text) and
the variables; only events marked `shared` are cached, and only a few thousand at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from graphql import ExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_SIZE = 4096  # results kept: events of the last moments, times the documents subscribed
_results: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()


def _variables_key(coerced: dict[str, Any]) -> Hashable | None:
    key = tuple(sorted(coerced.items()))
    try:
        hash(key)
    except TypeError:  # a list or an input object: not worth comparing
        return None
    return key


class SharedEvents(StrawberryGraphQLCoreExecutionContext):
    _event_key: Hashable | None = None

    def build_per_event_executor(self, payload: Any) -> Any:
        key = None
        if getattr(payload, "shared", False):
            variables = _variables_key(self.variable_values.coerced)
            if variables is not None:
                key = (id(payload), id(self.operation), variables)
                found = _results.get(key)
                if found is not None:
                    return _Done(found[1])  # not even a copy of the executor
        executor = super().build_per_event_executor(payload)
        if isinstance(executor, SharedEvents):
            executor._event_key = key
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        key = self._event_key
        if key is None:
            return super().execute_operation(serially)
        result: Any = super().execute_operation(serially)
        if isinstance(result, ExecutionResult):
            _keep(key, self.root_value, result)
            return result

        async def kept() -> Any:
            done = await result
            _keep(key, self.root_value, done)
            return done

        return kept()


class _Done:
    """What graphql-core asks of a per-event executor, for a result made already."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> Any:
        return self.result


def _keep(key: Hashable, payload: Any, result: Any) -> None:
    # The payload is kept with its result: while it lives, its id names nothing else.
    _results[key] = (payload, result)
    if len(_results) > _SIZE:
        _results.popitem(last=False)
