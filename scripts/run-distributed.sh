#!/usr/bin/env bash
# The distributed stack in the foreground: the engines (`make services`, already started by the
# make target), the migrations, API_PROCESSES API processes behind one port and WORKERS
# workers, their logs interleaved, each line prefixed with its process. Ctrl-C (or SIGTERM)
# stops every process, each finishing what it holds.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES_DIR=${SERVICES_DIR:-/var/tmp/graphql-chat-services}
API_PROCESSES=${API_PROCESSES:-2}
WORKERS=${WORKERS:-2}
FIRST_METRICS_PORT=${WORKER_METRICS_PORT:-9464}
export LOG_FORMAT=${LOG_FORMAT:-text}
# shellcheck disable=SC1091
. "$SERVICES_DIR/env"
BIN=.venv/bin

"$BIN/graphql-chat" migrate

# The prefixing `sed`s ignore Ctrl-C: they print the processes' last lines as they stop.
pids=()
stop() {
    trap - INT TERM EXIT
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap stop INT TERM EXIT

for ((i = 1; i <= WORKERS; i++)); do
    WORKER_METRICS_PORT=$((FIRST_METRICS_PORT + i - 1)) "$BIN/graphql-chat" worker \
        > >(trap '' INT; exec sed -u "s/^/[worker $i] /") 2>&1 &
    pids+=($!)
done
"$BIN/graphql-chat" serve --workers "$API_PROCESSES" \
    > >(trap '' INT; exec sed -u "s/^/[api] /") 2>&1 &
pids+=($!)
echo "[run] API on http://${HOST:-127.0.0.1}:${PORT:-3000} ($API_PROCESSES processes), $WORKERS workers (metrics on ports $FIRST_METRICS_PORT+); Ctrl-C stops them"

# Until any of them ends (Ctrl-C, or one failing): then the rest are stopped too.
wait -n "${pids[@]}" || true
