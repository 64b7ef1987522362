# graphql-chat: one image for every role (serve, worker, migrate, reindex).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY graphql_chat ./graphql_chat
COPY workers ./workers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOST=0.0.0.0 PORT=3000
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin chat
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# Migrations are read from the working directory (graphql_chat.migrations looks beside the
# package first, then here).
COPY alembic.ini ./
COPY alembic ./alembic
USER chat
EXPOSE 3000
# Readiness: every dependency answers and numbering is open (not recovering).
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health/ready', timeout=2)"
ENTRYPOINT ["graphql-chat"]
CMD ["serve"]
