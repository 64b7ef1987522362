"""The two GraphQL-over-WebSocket protocols as this server speaks them: `graphql-transport-ws`
(the `graphql-ws` library's, which Apollo Client, urql, Relay and GraphiQL speak) and the
legacy `graphql-ws` (subscriptions-transport-ws, still the first offer of some clients, such as
Python's `gql`).

- A client offering both gets `graphql-transport-ws`, whatever order it lists them in.
- Over either, queries and mutations run as over HTTP (one result, then `complete`), and
  subscriptions stream.
- An operation over the connection's limit (LIVE_MAX_SUBSCRIPTIONS) is refused with
  `extensions.code` `LIMIT_EXCEEDED`, as every refusal of this server carries a code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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


def preferred(offered: Sequence[str]) -> str | None:
    """The protocol to speak with a client that offered `offered`: ours in our order."""
    return next((protocol for protocol in PREFERENCE if protocol in offered), None)


class TransportProtocol(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_subscribe(self, message: transport.SubscribeMessage) -> None:
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and message["id"] not in self.operations
            and limit is not None
            and len(self.operations) >= limit
        ):
            await self.send_message(
                transport.ErrorMessage(id=message["id"], type="error", payload=[_LIMIT])
            )
            return
        await super().handle_subscribe(message)


class LegacyProtocol(BaseGraphQLWSHandler[Context, None]):
    async def handle_start(self, message: StartMessage) -> None:
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and message["id"] not in self.tasks
            and limit is not None
            and len(self.tasks) >= limit
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
