#!/usr/bin/env bash
# The README's role walkthrough as one script: every role on the default settings (the
# persistent in-process chain and the local store under $FEDMARKET_HOME, no servers), for a
# job whose trainers send int8 updates. Each command is printed before it runs; the first
# failure stops the script (non-zero exit). The last line is one JSON object:
#   {"job_id": int, "rounds": int, "accuracy": [float...], "verified": bool, "claims_wei": [int...]}
#
#   ./scripts/walkthrough.sh            # in a fresh temporary HOME (your ~/.fedmarket is untouched)
#   WORK=/some/dir ./scripts/walkthrough.sh   # keep the files there
set -euo pipefail
export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"
WORK="${WORK:-$(mktemp -d -t fedmarket-walkthrough-XXXXXX)}"
mkdir -p "$WORK"
cd "$WORK"
export HOME="$WORK/home"           # a new user: no settings file, no keys, no chain yet
unset FEDMARKET_HOME FEDMARKET_CONFIG FEDMARKET_RPC_URL FEDMARKET_IPFS_API \
  FEDMARKET_MARKET_ADDRESS FEDMARKET_ACCOUNT FEDMARKET_STORE_DIR
export FEDMARKET_PASSWORD="walkthrough password"   # keystores' password (else a prompt)
ROUNDS=3

run() { echo "\$ $*" >&2; "$@"; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])$1)"; }

# -- setup: a market, keys with ETH, data files ------------------------------------------------
run fedmarket deploy --dev-account 0
for name in owner agg t1 t2 t3; do
  run fedmarket account new "$name"
  run fedmarket account fund "$name" --eth 20
done
run fedmarket data split digits --parts 3 --out data
# the aggregator's bond: a job can name it only if its free bond covers the job's (the reward)
run fedmarket aggregator register --bond 10 --account agg

# -- owner: post the job (int8 updates), escrow 10 ETH ------------------------------------------
cat > job.toml <<TOML
name = "digits walkthrough"
dataset = "digits"
rounds = $ROUNDS
reward_eth = "10"
stake_eth = "1"
min_trainers = 3
max_trainers = 3             # the job starts by itself when the third trainer joins
aggregator = "agg"           # a keystore account name, or an address
validation_file = "data/val.npz"
codec = "int8"
[model]
family = "mlp"
input_dim = 64
num_classes = 10
hidden = [32]
[training]
local_epochs = 2
lr = 0.1
TOML
created=$(run fedmarket owner create-job --spec job.toml --account owner --json)
JOB=$(echo "$created" | json_field '["job_id"]')
VALIDATION=$(echo "$created" | json_field '["validation"]')

# -- trainers: stake, join, then each round commit and reveal ------------------------------------
for i in 1 2 3; do
  run fedmarket trainer register --stake 2 --account "t$i"
  run fedmarket trainer join "$JOB" --data "data/shard-$i.npz" --account "t$i"
done
for round in $(seq 1 "$ROUNDS"); do
  for step in commit reveal; do
    for i in 1 2 3; do
      run fedmarket trainer run "$JOB" --data "data/shard-$i.npz" --step --account "t$i" >/dev/null
    done
  done
  # -- aggregator: check, score on this round's validation chunk, aggregate, post the round, then
  #    reveal the chunk (from the owner's validation package): the round is final after the
  #    job's challenge window (0 s by default on a dev chain), and only then the next can post
  run fedmarket aggregator run-round "$JOB" --account agg --validation "$JOB=$VALIDATION" >/dev/null
done

# -- settlement: finalize, claims, the owner's refund --------------------------------------------
run fedmarket owner finalize "$JOB" --account owner
claims=()
for i in 1 2 3; do
  claims+=("$(run fedmarket trainer claim "$JOB" --account "t$i" --json | json_field '["reward_wei"]')")
done
run fedmarket owner refund "$JOB" --account owner
# why t1 got what it got: per round its reason, score, rank, pool share, slashes, reliability
run fedmarket trainer explain "$JOB" --account t1

# -- auditor: index, re-run every round on its revealed chunk, download the model -----------------
run fedmarket audit index
run fedmarket audit job "$JOB"
verified=$(run fedmarket audit verify "$JOB" --json)
run fedmarket owner download "$JOB" --out model.safetensors

python3 - "$JOB" "$ROUNDS" "$verified" "${claims[@]}" <<'PY'
import json, sys
job, rounds, verified, claims = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4:]
print(json.dumps({
    "job_id": job,
    "rounds": rounds,
    "accuracy": [r["validation_accuracy"] for r in verified["rounds"]],
    "verified": verified["ok"],
    "claims_wei": [int(c) for c in claims],
}))
PY
