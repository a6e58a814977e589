#!/usr/bin/env bash
# Submit the bundled digits example (a small trained MLP, 2,410 parameters) to a Ray cluster
# as a job: the same run as the README's first command, on the cluster.
#
#   jobs/digits.sh OUT [raylanczos run options...]
#
#   jobs/digits.sh /tmp/raylanczos-runs/digits                        # 1 worker
#   jobs/digits.sh s3://bucket/runs/digits --workers 4 --gpus-per-worker 1
#
# OUT is where the driver writes the outputs: an absolute path on the node that runs the job
# (the head), or an object-store URI (s3://, gs://). A relative path would land in the job's
# temporary working directory and be lost.
#
# Environment:
#   RAY_API_SERVER_ADDRESS  the job server (default http://127.0.0.1:8265: the head's port,
#                           forwarded by `ray dashboard cluster/aws.yaml` or `kubectl port-forward`)
#   RUNTIME_ENV             runtime env file (default jobs/runtime-env.yaml; use
#                           jobs/runtime-env-pip.yaml when the cluster lacks raylanczos)
#   RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH  the cluster's token, if not ~/.ray/auth_token
#
# Run it from anywhere; it submits the repository it lives in. Progress lines stream to
# this terminal and stay in the job log: `ray job logs <submission id>`.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
fi
out="$1"
shift

cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=token
exec "${RAY:-ray}" job submit \
    --address "${RAY_API_SERVER_ADDRESS:-http://127.0.0.1:8265}" \
    --working-dir . \
    --runtime-env "${RUNTIME_ENV:-jobs/runtime-env.yaml}" \
    -- raylanczos run --problem raylanczos.examples.digits:problem --out "$out" --overwrite "$@"
