"""The two GraphQL-over-WebSocket protocols as this server speaks them: `graphql-transport-ws`
(the `graphql-ws` library's, which Apollo Client, urql, Relay and GraphiQL speak) and the
legacy `graphql-ws` (subscriptions-transport-ws, still the first offer of some clients, such as
Python's `gql`).

- A client offering both gets `graphql-transport-ws`, whatever order it lists them in.
- Over either, queries and mutations run as over HTTP (one result, then `complete`), and
  subscriptions stream.
- An operation over the connection's limit (LIVE_MAX_SUBSCRIPTIONS) is refused with
  `extensions.code` `LIMIT_EXCEEDED`, as every refusal of this server carries a code.
- A legacy `start` or `stop` not of the protocol's shape (no string `id`, a payload that is not
  an object, a query that is not text, variables that are not an object) closes its
  connection with 4400, as a malformed message of `graphql-transport-ws` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from graphql import GraphQLFormattedError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws import types as transport
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    CompleteMessage,
    ErrorMessage,
    OperationMessage,
    StartMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from graphql_chat.graphql.context import Context

PREFERENCE = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)

_LIMIT: GraphQLFormattedError = {
    "message": "operation limit reached on this connection: complete one first",
    "extensions": {"code": "LIMIT_EXCEEDED", "limit": "LIVE_MAX_SUBSCRIPTIONS"},
}


def _full(limit: int | None, running: Collection[str], operation: str) -> bool:
    """Whether a new operation `operation` is over the connection's limit."""
    return limit is not None and operation not in running and len(running) >= limit


def _well_formed(message: Mapping[str, Any]) -> bool:
    """Whether a legacy `start` or `stop` has the protocol's shape."""
    if not isinstance(message.get("id"), str):
        return False
    if message.get("type") != "start":
        return True
    payload = message.get("payload")
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("query"), str)
        and isinstance(payload.get("variables") or {}, dict)
        and isinstance(payload.get("operationName") or "", str)
    )


def preferred(offered: Sequence[str]) -> str | None:
    """The protocol to speak with a client that offered `offered`: ours in our order."""
    return next((protocol for protocol in PREFERENCE if protocol in offered), None)


class TransportProtocol(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_subscribe(self, message: transport.SubscribeMessage) -> None:
        if self.connection_acknowledged and _full(
            self.max_subscriptions_per_connection, self.operations, message["id"]
        ):
            await self.send_message(
                transport.ErrorMessage(id=message["id"], type="error", payload=[_LIMIT])
            )
            return
        await super().handle_subscribe(message)


class LegacyProtocol(BaseGraphQLWSHandler[Context, None]):
    async def handle_message(self, message: OperationMessage) -> None:
        if message.get("type") in ("start", "stop") and not _well_formed(message):
            await self.websocket.close(4400, f"a malformed {message['type']} message")
            return
        await super().handle_message(message)

    async def handle_start(self, message: StartMessage) -> None:
        if self.connection_acknowledged and _full(
            self.max_subscriptions_per_connection, self.tasks, message["id"]
        ):
            await self.send_message(ErrorMessage(type="error", id=message["id"], payload=_LIMIT))
            return
        await super().handle_start(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        """Any operation, as `graphql-transport-ws` runs it: a query or a mutation gives one
        `data` and `complete`, a subscription a `data` per event."""
        try:
            results = await self.schema.stream(
                query,
                variable_values=variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation_name,
            )
            async with aclosing(results):
                first = True
                async for result in results:
                    if first and isinstance(result, PreExecutionError):
                        assert result.errors
                        payload: Any = result.errors[0].formatted
                        await self.send_message(
                            ErrorMessage(type="error", id=operation_id, payload=payload)
                        )
                        return
                    if not isinstance(result, ExecutionResult):  # @defer, @stream: not served
                        await self.send_message(
                            ErrorMessage(
                                type="error",
                                id=operation_id,
                                payload={
                                    "message": "incremental delivery is not served",
                                    "extensions": {"code": "BAD_REQUEST"},
                                },
                            )
                        )
                        return
                    await self.send_data_message(result, operation_id)
                    first = False
            await self.send_message(CompleteMessage(type="complete", id=operation_id))
        except asyncio.CancelledError:
            await self.send_message(CompleteMessage(type="complete", id=operation_id))
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)
