"""Settings from the environment, and which adapter each port gets."""

from __future__ import annotations

from functools import cached_property
from ipaddress import ip_address
from urllib.parse import unquote, urlsplit

from limits import parse_many
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graphql_chat.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./graphql-chat.db"


class Settings(BaseSettings):
    """Every knob the product has. Names are the environment variables (upper case)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    rabbitmq_url: str | None = None
    elasticsearch_url: str | None = None
    admin_token: str | None = None
    cors_allow_origins: str = ""
    redis_key_prefix: str = "gc"
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    redis_wait_timeout_ms: int = Field(default=500, ge=1, le=60_000)
    queue_name: str = "graphql-chat.writes"
    elasticsearch_index: str = "graphql-chat-messages"
    elasticsearch_shards: int = Field(default=1, ge=1, le=1024)
    elasticsearch_replicas: int = Field(default=0, ge=0, le=16)

    max_name_length: int = Field(default=255, ge=1, le=255)
    max_body_length: int = Field(default=65_535, ge=1, le=1_000_000)
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    default_page_size: int = Field(default=20, ge=1)
    max_page_size: int = Field(default=100, ge=1)
    max_query_depth: int = Field(default=10, ge=2)
    max_query_aliases: int = Field(default=15, ge=1)
    max_query_tokens: int = Field(default=2000, ge=50)
    max_query_bytes: int = Field(default=65_536, ge=1024)
    max_query_fields: int = Field(default=500, ge=10)
    max_query_cost: int = Field(default=100_000, ge=100)

    persisted_queries_manifest: str | None = None
    graphql_get_max_age: int = Field(default=0, ge=0, le=86_400)
    live_max_connections: int = Field(default=10_000, ge=1)
    live_max_subscriptions: int = Field(default=20, ge=1)
    live_queue_size: int = Field(default=1000, ge=1)
    live_init_timeout_ms: int = Field(default=10_000, ge=100)
    live_gap_wait_ms: int = Field(default=500, ge=1)
    page_cache_bytes: int = Field(default=33_554_432, ge=0)
    idempotency_window_seconds: int = Field(default=86_400, ge=1, le=30 * 86_400)
    user_token_max_lifetime_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    user_token_lifetime_seconds: int = Field(default=3600, ge=60, le=30 * 86_400)
    signing_secret_overlap_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    access_recheck_ms: int = Field(default=500, ge=10, le=500)
    # Rate limits, in the `limits` library's notation ("20/second;300/minute"); "" turns one
    # off. Counted in Redis when REDIS_URL is set (across API processes), else in memory.
    rate_limit_anonymous: str = "60/minute"  # per client address: creating applications
    rate_limit_application: str = "5000/second"  # per application token, reads and writes
    rate_limit_user_writes: str = "20/second;300/minute"  # per user of an application
    rate_limit_user_reads: str = "50/second;1500/minute"
    trusted_proxies: str = ""  # addresses (or networks) whose X-Forwarded-For is believed

    batch_max_events: int = Field(default=1000, ge=1)
    worker_batch_ms: float = Field(default=50, ge=0)
    sqlite_synchronous: str = "FULL"
    log_level: str = "info"
    log_format: str = "auto"
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)

    @field_validator(
        "redis_url",
        "rabbitmq_url",
        "elasticsearch_url",
        "persisted_queries_manifest",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(
        "rate_limit_anonymous",
        "rate_limit_application",
        "rate_limit_user_writes",
        "rate_limit_user_reads",
    )
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        if value.strip():
            try:
                parse_many(value)
            except ValueError as error:
                raise ValueError(
                    f"{value!r} is not a rate limit such as 20/second or 20/second;300/minute "
                    f"({error})"
                ) from None
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        return DEFAULT_DATABASE_URL if value in ("", None) else value

    @field_validator("sqlite_synchronous")
    @classmethod
    def _synchronous_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError("SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        value = value.lower()
        if value not in {"auto", "json", "text"}:
            raise ValueError("LOG_FORMAT must be auto, json or text")
        return value

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def check(self) -> None:
        """Refuse combinations that cannot be correct, with a message an operator can act on."""
        if self.default_page_size > self.max_page_size:
            raise ConfigurationError("DEFAULT_PAGE_SIZE must not exceed MAX_PAGE_SIZE")
        if not (self.is_sqlite or self.database_url.startswith("mysql+asyncmy://")):
            raise ConfigurationError(
                "DATABASE_URL must be sqlite+aiosqlite:///PATH or mysql+asyncmy://USER:PASS@HOST/DB"
            )
        if self.rabbitmq_url and not self.redis_url:
            raise ConfigurationError(
                "RABBITMQ_URL needs REDIS_URL: with several API processes and workers, numbers "
                "must come from one place (in-process numbers would hand out duplicates)"
            )
        if self.rabbitmq_url and self.is_sqlite:
            raise ConfigurationError(
                "RABBITMQ_URL needs a MySQL DATABASE_URL: workers in other processes cannot share "
                "the embedded SQLite database"
            )
        if not self.is_sqlite and not self.redis_url:
            raise ConfigurationError(
                "a MySQL DATABASE_URL needs REDIS_URL: in-process numbers are only correct for "
                "the embedded single process"
            )
        if not self.is_sqlite and not self.elasticsearch_url:
            raise ConfigurationError(
                "a MySQL DATABASE_URL needs ELASTICSEARCH_URL: the embedded search (FTS5) lives "
                "in SQLite"
            )
        if self.redis_url:
            check_redis_url(self.redis_url)

    @property
    def loopback(self) -> bool:
        """Whether the server listens on this machine only."""
        if self.host in ("localhost", "localhost.localdomain"):
            return True
        try:
            return ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    @property
    def origins(self) -> list[str]:
        """CORS_ALLOW_ORIGINS as a list (comma-separated; empty: no cross-origin access)."""
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]

    @property
    def distributed(self) -> bool:
        return self.rabbitmq_url is not None


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_REDIS_SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES, *CLUSTER_SCHEMES)


def check_redis_url(url: str) -> None:
    """Refuse a `REDIS_URL` no client can be made from, naming the forms that can."""
    parts = urlsplit(url)
    if parts.scheme not in _REDIS_SCHEMES:
        raise ConfigurationError(
            "REDIS_URL must be redis://HOST:PORT/DB (or rediss://, unix://), "
            "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB] or "
            "redis+cluster://HOST:PORT[,HOST:PORT...]"
        )
    if parts.scheme in SENTINEL_SCHEMES:
        sentinel_service(parts.path)
    if parts.scheme in CLUSTER_SCHEMES and parts.path.strip("/") not in ("", "0"):
        raise ConfigurationError(
            "a Redis Cluster has one database: redis+cluster://HOST:PORT[,HOST:PORT...]"
        )


def sentinel_service(path: str) -> tuple[str, int]:
    """The service and database a Sentinel URL's path names (`/SERVICE[/DB]`)."""
    names = [p for p in path.split("/") if p]
    if not names or len(names) > 2 or (len(names) == 2 and not names[1].isdigit()):
        raise ConfigurationError(
            "a Sentinel URL names its service: redis+sentinel://HOST:PORT/SERVICE[/DB]"
        )
    return unquote(names[0]), int(names[1]) if len(names) == 2 else 0
