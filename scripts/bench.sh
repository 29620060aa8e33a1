#!/usr/bin/env bash
# Runs Peyvand's standard load scenarios and prints their figures (see docs/BENCHMARKS.md).
#
#   scripts/bench.sh            all scenarios
#   scripts/bench.sh messages   only the message scenarios (10k/s, then a rate sweep from 15k/s)
#   scripts/bench.sh idle       only the idle-connections scenario
#   scripts/bench.sh media      only the media scenario (uploads, downloads, a 2 GB upload's
#                               memory, photos per second)
#   scripts/bench.sh media-across  photos from alborz to damavand on `peyvand demo`: send to
#                               downloaded on the other messenger
#   scripts/bench.sh cluster    the rate sweep on one node on PostgreSQL, then on two nodes on
#                               PostgreSQL and NATS, then IDLE_CONNECTIONS idle streams on as
#                               many nodes as the open-file limit needs (not part of "all": it
#                               needs both running)
#
# Environment: BENCH_OUT (where the JSON and logs go), SWEEP_RATES (messages/s to try, in
# rising order), IDLE_CONNECTIONS (default 100000; "idle" caps it by the open-file limit,
# "cluster" starts as many nodes as it needs), USERS
# (people in the message scenarios, default 1000), PEYVAND_BENCH_POSTGRES (default
# postgres://postgres@127.0.0.1:5432/test) and PEYVAND_BENCH_NATS (default
# nats://127.0.0.1:4222) for "cluster".
# Everything runs on loopback; the bench starts its own servers with fresh data (a schema of
# their own on PostgreSQL, dropped at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -p peyvand-bench -p peyvand
bench="$CARGO_TARGET_DIR/release/peyvand-bench"
out=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
users=${USERS:-1000}

# Every WebSocket is one open file in the bench and one in the server, which inherits this
# limit. Only the hard limit bounds it; raising that needs CAP_SYS_RESOURCE.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 1048576 ]; then hard=1048576; fi
ulimit -n "$hard"
files=$(ulimit -n)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), \
$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r), open files $files"
echo "results: $out"

perf_flag=()
if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
    perf_flag=(--perf-stat)
fi

# run NAME ARGS...: one bench run; JSON to NAME.json, the human summary to NAME.log and here.
run() {
    local name=$1
    shift
    echo
    echo "== $name: peyvand-bench $*"
    { "$bench" "$@" 2>&1 >"$out/$name.json"; } | tee "$out/$name.log" | sed -E '/^  (signed up|connected) /d' >&2
}

# A rate is sustained when every message was acknowledged and delivered, none failed, and
# 99% were delivered within 100 ms of their due time.
sustained() {
    jq -e '.messages | .errors == {} and .unanswered == 0 and .missing == 0
        and .delivered == .scheduled and .delivery_latency.p99_ms < 100' "$1" >/dev/null
}

summary_line() {
    jq -r 'def r: (. * 10 | round) / 10;
        [.rate, (.messages.delivered_per_second | round), (.messages.delivery_latency.p50_ms | r),
        (.messages.delivery_latency.p99_ms | r), (.messages.delivery_latency.p999_ms | r),
        .messages.unanswered + .messages.missing + ([.messages.errors[]] | add // 0),
        (.cpu_while_sending.server_cores | .*100 | round / 100), (.cpu_while_sending.bench_cores | .*100 | round / 100),
        (.sign_up.per_second | round)]
        | @tsv' "$1"
}

# sweep NAME DEFAULT_RATES [BENCH OPTIONS...]: the rates of SWEEP_RATES (else DEFAULT_RATES) in
# rising order as NAME-<rate>, until one is not sustained, then a table of every NAME-* run and
# the highest rate sustained. The options (--storage, --bus, --nodes) go before the scenario.
sweep() {
    local name=$1 rates=$2 best=none rate
    shift 2
    for rate in ${SWEEP_RATES:-$rates}; do
        run "$name-$rate" "$@" messages --users "$users" --rate "$rate" --duration 15 "${perf_flag[@]}"
        if sustained "$out/$name-$rate.json"; then best=$rate; else break; fi
    done
    echo
    echo "$name: rate  delivered/s  p50_ms  p99_ms  p99.9_ms  lost_or_late  server_cores  bench_cores  sign-ups/s"
    for f in "$out/$name"-*.json; do summary_line "$f"; done | sort -n | column -t
    echo "highest rate sustained with p99 < 100 ms and nothing lost: $best/s"
}

if [ "$what" = all ] || [ "$what" = messages ]; then
    run messages-10k messages --users "$users" --rate 10000 --duration 20 "${perf_flag[@]}"
    sweep messages "15000 17500 20000 22500 25000 27500 30000"
fi

if [ "$what" = cluster ]; then
    postgres=${PEYVAND_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
    nats=${PEYVAND_BENCH_NATS:-nats://127.0.0.1:4222}
    cluster_rates="1000 1500 2000 2500 3000 4000 5000"
    # server_cores counts the peyvand processes only; PostgreSQL's and NATS's work shows in the
    # whole machine's busy CPU of each run's log.
    sweep postgres-1node "$cluster_rates" --storage "$postgres"
    sweep postgres-nats-2nodes "$cluster_rates" --nodes 2 --storage "$postgres" --bus "$nats"
    # 100,000 idle streams: as many nodes as the open-file limit needs, held for two ping rounds.
    if [ "$files" -le 1000 ]; then
        echo "the open-file limit ($files) leaves no room for idle streams" >&2
        exit 1
    fi
    idle_nodes=$(( (${IDLE_CONNECTIONS:-100000} + files - 1001) / (files - 1000) ))
    if [ "$idle_nodes" -lt 2 ]; then idle_nodes=2; fi
    run idle-cluster --nodes "$idle_nodes" --storage "$postgres" --bus "$nats" \
        idle --connections "${IDLE_CONNECTIONS:-100000}" --hold 70
    jq -r '"idle-cluster: \(.connected) connected on \(.nodes) nodes, \(.still_open_after_hold) open after \(.hold_s) s; server memory per connection \(.server_bytes_per_connection | floor) B on average, \(.server_bytes_per_connection_marginal | floor) B marginal"' "$out/idle-cluster.json"
fi

if [ "$what" = all ] || [ "$what" = idle ]; then
    want=${IDLE_CONNECTIONS:-100000}
    # Leave room for the server's database files, the HTTP pool and the bench's own files.
    room=$((files - 1000))
    if [ "$want" -gt "$room" ]; then
        echo "note: the open-file limit ($files) allows $room connections, not $want"
        want=$room
    fi
    run idle idle --connections "$want"
    jq -r '"idle: \(.connected) connected, \(.still_open_after_hold) open after \(.hold_s) s; server memory per connection \(.server_bytes_per_connection | floor) B on average, \(.server_bytes_per_connection_marginal | floor) B marginal (second half); \(.connect.per_second | floor) connects/s; \(.sign_up.per_second | floor) sign-ups/s"' "$out/idle.json"
fi

if [ "$what" = all ] || [ "$what" = media ]; then
    run media media
    jq -r '"media: upload \(.uploads.mb_per_second | floor) MB/s, download \(.downloads.mb_per_second | floor) MB/s; \(.concurrent_downloads.downloads) downloads at once \(.concurrent_downloads.mb_per_second | floor) MB/s, p99 \(.concurrent_downloads.p99_seconds * 100 | round / 100) s; \(.large_upload.bytes / 1e6 | floor) MB upload peak RSS \(.large_upload.server_rss_peak_above_idle / 1048576 | floor) MiB above idle; \(.photos.per_second * 100 | round / 100) photos/s"' "$out/media.json"
fi

if [ "$what" = all ] || [ "$what" = media-across ]; then
    run media-across media-across
    jq -r '"media-across: send to downloaded on damavand p50 \(.send_to_downloaded.p50_ms | round) ms, p99 \(.send_to_downloaded.p99_ms | round) ms; visible p50 \(.send_to_visible.p50_ms | round) ms; first download p50 \(.first_download.p50_ms | round) ms; second p50 \(.second_download.p50_ms | round) ms"' "$out/media-across.json"
fi
