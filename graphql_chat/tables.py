"""The relational schema, shared by the store adapter and the Alembic history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Accepted by both MySQL 8 and MariaDB; binary so that tokens compare exactly.
MYSQL_TABLE: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}

# SQLite only has one 64-bit INTEGER; it must be spelled INTEGER for a rowid alias.
Id = BigInteger().with_variant(Integer(), "sqlite")
# Bodies up to MAX_BODY_LENGTH characters: 4 bytes each in utf8mb4 overflow TEXT's 64 KiB.
Body = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class Timestamp(TypeDecorator[datetime]):
    """A UTC time to the microsecond: DATETIME(6) on MySQL, ISO text on SQLite; aware UTC
    datetimes in Python (the columns hold UTC, without a zone)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


applications = Table(
    "applications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token", String(36), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("chats_count", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime, nullable=False, server_default=func.current_timestamp()),
    # The application's own numbering epoch on Redis Cluster (0: the global one alone);
    # workers set aside its draws of an epoch older than this and the global one.
    Column("epoch", BigInteger, nullable=False, server_default="0"),
    # What names the application in its users' tokens and a user's REST paths (public), the
    # secret its backend signs those tokens with, and the one it replaced, which verifies
    # until `previous_secret_until` (microseconds since 1970; see alembic/versions/0008).
    Column("public_id", String(32), nullable=True),
    Column("signing_secret", String(64), nullable=True),
    Column("previous_signing_secret", String(64), nullable=True),
    Column("previous_secret_until", BigInteger, nullable=True),
    # Whether users may create chats and add members to their chats (else the backend alone).
    Column("users_manage_chats", Boolean, nullable=False, server_default=true()),
    Index("uq_applications_public_id", "public_id", unique=True),
    **MYSQL_TABLE,
)

chats = Table(
    "chats",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "application_id",
        Id,
        ForeignKey("applications.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("number", Integer, nullable=False),
    Column("messages_count", Integer, nullable=False, server_default="0"),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("application_id", "number"),
    **MYSQL_TABLE,
)

messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("chat_id", Id, ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("body", Body, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("created_revision", BigInteger, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("author", String(255), nullable=True),  # a user id; null: sent by the backend
    UniqueConstraint("chat_id", "number"),
    **MYSQL_TABLE,
)

# One row (id 1): the numbering epoch workers accept, whether a recovery is draining the
# write queue, how many writes workers set aside, and which write queue takes new writes
# (the generation's parity; see graphql_chat.adapters.redis_numbers).
numbering = Table(
    "numbering",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", BigInteger, nullable=False, server_default="0"),
    Column("recovering", Boolean, nullable=False, server_default=false()),
    Column("recovery_token", BigInteger, nullable=False, server_default="0"),
    Column("set_aside", BigInteger, nullable=False, server_default="0"),
    Column("generation", BigInteger, nullable=False, server_default="0"),
    **MYSQL_TABLE,
)

# Idempotency keys' claims, stored with their creates (see alembic/versions/0006).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("application_id", BigInteger, primary_key=True, autoincrement=False),
    Column("key", String(32), primary_key=True),
    Column("fingerprint", String(32), nullable=False),
    Column("chat_number", Integer, nullable=False),
    Column("number", Integer, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False, index=True),
    **MYSQL_TABLE,
)

# Who may read and write a chat with a user token. Keyed by the chat's number: a chat's first
# member is there before a worker stores the chat. `id` orders a chat's members and a user's
# chats by when they joined (`joined_at`, microseconds since 1970).
chat_members = Table(
    "chat_members",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "application_id",
        Id,
        ForeignKey("applications.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("chat_number", Integer, nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("joined_at", BigInteger, nullable=False),
    # The member's read marker, when it moved, and when it was last moved back on request;
    # the chat's latest activity for them and its highest stored number, kept by the batch
    # that stores its messages (see alembic/versions/0009).
    Column("last_read_number", Integer, nullable=False, server_default="0"),
    Column("read_at", BigInteger, nullable=True),
    Column("unread_at", BigInteger, nullable=False, server_default="0"),
    Column("active_at", BigInteger, nullable=False, server_default="0"),
    Column("top_number", Integer, nullable=False, server_default="0"),
    UniqueConstraint("application_id", "chat_number", "user_id"),
    Index("ix_chat_members_application_id_user_id", "application_id", "user_id"),
    Index("ix_chat_members_inbox", "application_id", "user_id", "active_at", "id"),
    **MYSQL_TABLE,
)

# A user's tokens issued before `issued_before` (seconds since 1970, a JWT's `iat`) are refused.
user_revocations = Table(
    "user_revocations",
    metadata,
    Column("application_id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", String(255), primary_key=True),
    Column("issued_before", BigInteger, nullable=False),
    **MYSQL_TABLE,
)
