"""The wire format of accepted writes: JSON messages on the write queue.

A message is `{"events": [...]}`; an event is an object with short keys (messages are what
the broker stores and replicates, so every byte is paid for several times):

    {"kind": "chat", "a": application id, "c": chat number, "e": numbering epoch,
     "t": accepted at (microseconds since 1970-01-01 UTC)}
    {"kind": "message", "a": ..., "c": ..., "n": message number, "b": body, "r": revision,
     "e": epoch, "new": true for a create, "t": accepted at}

    {"kind": "read", "a": ..., "c": ..., "u": the member's user id, "n": the marker,
     "t": marked at, "back": true when moved back (mark unread)}

and, for a create sent with an idempotency key, `"k": [key hash, fingerprint, window]`; for
a create by a user (a user token), `"u": the user's id`.
A traced event's context travels in the message's `traceparents` header (`traces`).

The earlier shapes of this format are read too: a message holding a single event object,
events without `e` (epoch 0: written before migration 0002's numbering epochs) and without
`t` (0: the store's clock, as before migration 0005's times).
"""

from __future__ import annotations

from typing import Any

import aio_pika
import orjson

from graphql_chat.domain import ChatCreated, Claim, Event, MessageWritten, ReadMarked

# What decoding a message that is not in this format raises.
UNDECODABLE = (ValueError, KeyError, TypeError)

# A message closes once its body passes this size (a larger event travels alone), so what a
# worker holds is bounded: its prefetch times this.
MAX_MESSAGE_BYTES = 256 * 1024


def event_to_dict(event: Event) -> dict[str, Any]:
    found = _event_dict(event)
    if event.claim is not None:
        found["k"] = [event.claim.key, event.claim.fingerprint, event.claim.window]
    if isinstance(event, MessageWritten) and event.author is not None:
        found["u"] = event.author
    return found


def _event_dict(event: Event) -> dict[str, Any]:
    if isinstance(event, ChatCreated):
        return {
            "kind": "chat",
            "a": event.application_id,
            "c": event.chat_number,
            "e": event.epoch,
            "t": event.at,
        }
    if isinstance(event, ReadMarked):
        return {
            "kind": "read",
            "a": event.application_id,
            "c": event.chat_number,
            "u": event.user,
            "n": event.number,
            "t": event.at,
            "back": event.back,
        }
    return {
        "kind": "message",
        "a": event.application_id,
        "c": event.chat_number,
        "n": event.number,
        "b": event.body,
        "r": event.revision,
        "e": event.epoch,
        "new": event.created,
        "t": event.at,
    }


def event_from_dict(data: dict[str, Any]) -> Event:
    """The inverse of `event_to_dict`; events without an epoch (older publishers) get 0."""
    epoch = int(data.get("e", 0))
    at = int(data.get("t", 0))
    claimed = data.get("k")
    claim = None if claimed is None else Claim(str(claimed[0]), str(claimed[1]), int(claimed[2]))
    if data["kind"] == "chat":
        return ChatCreated(int(data["a"]), int(data["c"]), epoch, at, claim)
    if data["kind"] == "message":
        return MessageWritten(
            int(data["a"]),
            int(data["c"]),
            int(data["n"]),
            str(data["b"]),
            int(data["r"]),
            epoch,
            bool(data.get("new", False)),
            at,
            claim,
            None if data.get("u") is None else str(data["u"]),
        )
    if data["kind"] == "read":
        return ReadMarked(
            int(data["a"]),
            int(data["c"]),
            str(data["u"]),
            int(data["n"]),
            at,
            bool(data.get("back", False)),
        )
    raise ValueError(f"unknown event kind {data['kind']!r}")


def decode_events(body: bytes) -> list[Event]:
    """The events of one message: `{"events": [...]}`, or a single event (older publishers).

    Raises ValueError, KeyError or TypeError when the body is not that.
    """
    payload = orjson.loads(body)
    if isinstance(payload, dict) and "events" in payload:
        return [event_from_dict(item) for item in payload["events"]]
    return [event_from_dict(payload)]


def encode(payload: dict[str, Any]) -> aio_pika.Message:
    return message(orjson.dumps(payload))


def message(body: bytes, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        content_type="application/json",
        headers=headers,
    )


def traces(parents: list[str]) -> dict[str, Any]:
    """The headers carrying the trace context of each event of a message, in order (W3C
    `traceparent` values, "" for an event not traced)."""
    return {TRACEPARENTS: ",".join(parents)}


def traces_of(headers: Any, events: int) -> list[str]:
    """The inverse of `traces`, for a message of `events` events: "" for each when the
    header is missing or does not fit the events."""
    value = (headers or {}).get(TRACEPARENTS)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    parents = value.split(",") if isinstance(value, str) else []
    return parents if len(parents) == events else [""] * events


TRACEPARENTS = "traceparents"


def event_bodies(items: list[bytes], limit: int = MAX_MESSAGE_BYTES) -> list[tuple[int, bytes]]:
    """Encoded events as message bodies `{"events": [...]}` of about `limit` bytes at most,
    in order, each with how many events it holds."""
    bodies: list[tuple[int, bytes]] = []
    encoded: list[bytes] = []
    size = 0
    for item in items:
        if encoded and size + len(item) > limit:
            bodies.append((len(encoded), b'{"events":[' + b",".join(encoded) + b"]}"))
            encoded, size = [], 0
        encoded.append(item)
        size += len(item) + 1
    if encoded:
        bodies.append((len(encoded), b'{"events":[' + b",".join(encoded) + b"]}"))
    return bodies
