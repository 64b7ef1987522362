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
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
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
