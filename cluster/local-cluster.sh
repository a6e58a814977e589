#!/usr/bin/env bash
# A multi-node Ray cluster on this one machine, to rehearse a cluster run before paying for
# one: a head node (the driver's node, no GPUs, like the cloud configs) and NODES-1 worker
# nodes, each a raylet of its own with one stand-in GPU (a declared GPU resource, so
# `--gpus-per-worker 1` places one raylanczos worker per node exactly as on a GPU cluster;
# JAX still computes on the CPU).
#
#   cluster/local-cluster.sh start [NODES]   # default 3: the head and 2 worker nodes
#   cluster/local-cluster.sh status
#   cluster/local-cluster.sh stop
#
# Then, from the repository root (the commands are printed by `start`):
#
#   export RAY_AUTH_MODE=token
#   ray job submit --address http://127.0.0.1:8266 --working-dir . --runtime-env jobs/runtime-env.yaml -- \
#       raylanczos run --problem raylanczos.examples.digits:problem --out /tmp/raylanczos-runs/digits \
#       --workers 2 --gpus-per-worker 1 --overwrite
#
# Environment:
#   RAYLANCZOS_LOCAL_DIR   state: each node's Ray temp dir, logs, pids (default
#                          /tmp/raylanczos-local-$USER; keep it short, Ray puts Unix sockets under it)
#   RAYLANCZOS_LOCAL_CPUS  CPUs per node (default 1)
#   RAYLANCZOS_LOCAL_PORT  GCS port of the head (default 6390)
#   RAYLANCZOS_LOCAL_DASHBOARD_PORT  dashboard and job server port (default 8266)
#   RAY_AUTH_TOKEN_PATH    token file (default ~/.ray/auth_token, created if missing)
#
# Token authentication is on (RAY_AUTH_MODE=token) and the dashboard and job server listen
# on 127.0.0.1 only. `stop` ends only the processes of this cluster: the `ray start --block`
# processes it started (their pids are in $RAYLANCZOS_LOCAL_DIR/pids), and any Ray process
# left under its own temp dirs. Unlike `ray stop`, it leaves every other Ray on the machine alone.
set -euo pipefail

STATE_DIR="${RAYLANCZOS_LOCAL_DIR:-/tmp/raylanczos-local-${USER:-$(id -un)}}"
CPUS="${RAYLANCZOS_LOCAL_CPUS:-1}"
GCS_PORT="${RAYLANCZOS_LOCAL_PORT:-6390}"
DASHBOARD_PORT="${RAYLANCZOS_LOCAL_DASHBOARD_PORT:-8266}"
PIDS="$STATE_DIR/pids"
RAY="${RAY:-ray}"
PYTHON="${PYTHON:-python3}"

export RAY_AUTH_MODE=token
export RAY_USAGE_STATS_ENABLED=0

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
}

free_ports() {  # free_ports N: N free TCP ports on 127.0.0.1
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

node_ports() {  # the ports each node needs apart from the GCS and dashboard ports
    local p
    read -r -a p <<< "$(free_ports 4)"
    echo "--dashboard-agent-listen-port=${p[0]} --dashboard-agent-grpc-port=${p[1]}" \
         "--runtime-env-agent-port=${p[2]} --metrics-export-port=${p[3]}" \
         "--min-worker-port=0 --max-worker-port=0"
}

wait_started() {  # wait_started PID LOG: until `ray start` reports success, or fail
    local pid="$1" log="$2" i
    for i in $(seq 240); do
        if grep -q "Ray runtime started" "$log" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "local-cluster: a node failed to start; the end of $log:" >&2
            tail -n 20 "$log" >&2
            return 1
        fi
        sleep 0.5
    done
    echo "local-cluster: a node did not start within 120 s; see $log" >&2
    return 1
}

ensure_token() {
    local token="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
    if [[ -z "${RAY_AUTH_TOKEN:-}" && ! -s "$token" ]]; then
        if [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
            echo "local-cluster: RAY_AUTH_TOKEN_PATH=$token holds no token" >&2
            exit 1
        fi
        "$RAY" get-auth-token --generate > /dev/null
    fi
}

start() {
    local nodes="${1:-3}"
    if ! [[ "$nodes" =~ ^[1-9][0-9]*$ ]]; then
        echo "local-cluster: NODES must be a positive integer, got '$nodes'" >&2
        exit 2
    fi
    if [[ -s "$PIDS" ]]; then
        echo "local-cluster: already started (pids in $PIDS); run '$0 stop' first" >&2
        exit 1
    fi
    mkdir -p "$STATE_DIR"
    ensure_token

    local client_port
    client_port="$(free_ports 1)"
    # shellcheck disable=SC2046  # node_ports prints separate options on purpose
    nohup "$RAY" start --head --block --port="$GCS_PORT" \
        --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" --include-dashboard=true \
        --ray-client-server-port="$client_port" $(node_ports) \
        --num-cpus="$CPUS" --num-gpus=0 --temp-dir="$STATE_DIR/node-0" --disable-usage-stats \
        > "$STATE_DIR/head.log" 2>&1 < /dev/null &
    echo "$!" >> "$PIDS"
    wait_started "$!" "$STATE_DIR/head.log"

    # Each node gets a temp dir of its own: nodes sharing one would unpack a job's working
    # directory into the same place, and replace it under a running driver.
    local i
    for ((i = 1; i < nodes; i++)); do
        # shellcheck disable=SC2046
        nohup "$RAY" start --block --address="127.0.0.1:$GCS_PORT" $(node_ports) \
            --num-cpus="$CPUS" --num-gpus=1 --temp-dir="$STATE_DIR/node-$i" --disable-usage-stats \
            > "$STATE_DIR/worker-$i.log" 2>&1 < /dev/null &
        echo "$!" >> "$PIDS"
        wait_started "$!" "$STATE_DIR/worker-$i.log"
    done

    cat <<EOF
local-cluster: $nodes node(s) up: the head ($CPUS CPU, no GPU) and $((nodes - 1)) worker node(s) ($CPUS CPU, 1 stand-in GPU each).
  export RAY_AUTH_MODE=token
  ray job submit --address http://127.0.0.1:$DASHBOARD_PORT --working-dir . --runtime-env jobs/runtime-env.yaml -- \\
      raylanczos run --problem raylanczos.examples.digits:problem --out /tmp/raylanczos-runs/digits \\
      --workers $((nodes > 1 ? nodes - 1 : 1)) --gpus-per-worker $((nodes > 1 ? 1 : 0)) --overwrite
  $0 stop
EOF
}

leftovers() {  # pids of processes still running under this cluster's temp dirs
    if [[ -d "$STATE_DIR" ]]; then
        pgrep -f -- "$STATE_DIR/node-" || true
    fi
}

stop() {
    local pids=() pid i
    if [[ -s "$PIDS" ]]; then
        mapfile -t pids < "$PIDS"
    fi
    # Worker nodes first, then the head. `ray start --block` ends its node's processes on SIGTERM.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[$i]}" 2>/dev/null || true
    done
    for i in $(seq 60); do
        local alive=0
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        [[ $alive == 0 ]] && break
        sleep 0.5
    done
    for pid in "${pids[@]}" $(leftovers); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$PIDS"
    echo "local-cluster: stopped"
}

status() {
    if [[ ! -s "$PIDS" ]]; then
        echo "local-cluster: not running"
        return 0
    fi
    "$RAY" status --address="127.0.0.1:$GCS_PORT"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop ;;
    status) status ;;
    *) usage ;;
esac
