"""`serve` and `worker` refuse an index of an older mapping and say how to move on;
`graphql-chat reindex` builds the new one, and both start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from elasticsearch import AsyncElasticsearch

from tests.conftest import distributed_settings
from tests.engines import engine_url
from tests.system.conftest import environment_of, free_port

pytestmark = pytest.mark.system


def _run(
    environment: dict[str, str], *command: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graphql_chat", *command],
        env={**os.environ, **environment, "LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_older_index_refused_at_start_until_reindexed() -> None:
    async with distributed_settings() as settings:
        environment = {**environment_of(settings), "PORT": str(free_port())}
        raw = AsyncElasticsearch(engine_url("ELASTICSEARCH_URL"))
        try:
            await raw.indices.create(
                index=settings.elasticsearch_index,
                mappings={"properties": {"chat_id": {"type": "long"}}},
            )
            worker = _run(environment, "worker", "--burst")
            assert worker.returncode == 2, worker.stderr
            assert "graphql-chat reindex" in worker.stderr
            serve = _run(environment, "serve")
            assert serve.returncode != 0
            assert "graphql-chat reindex" in serve.stderr + serve.stdout
            reindex = _run(environment, "reindex")
            assert reindex.returncode == 0, reindex.stderr
            assert "reindexed 0 messages" in reindex.stdout
            worker = _run(environment, "worker", "--burst")
            assert worker.returncode == 0, worker.stderr
        finally:
            await raw.close()
