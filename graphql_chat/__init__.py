"""graphql-chat: applications hold numbered chats, chats hold numbered, searchable messages."""

__version__ = "0.1.0"
