#!/bin/sh
# bench_cluster.sh — lab07 (round-robin master + 2 workers) against Node's cluster doing the same.
# Prints figures, never pass/fail: the targets are stated next to the measurements.
#
#   make lab07 loadgen && sh bench/bench_cluster.sh        (ROUNDS=3 is the default)
#
#   a connection per request   ab -n 20000 -c 32 GET /     requests/s, median of ROUNDS runs
#   resident memory            master + its 2 workers, summed, after the runs:
#                              RSS (each process counts the shared C/C++ libraries it maps)
#                              and PSS (shared pages divided among the processes that share them)
# Servers: ./lab07 --workers 2; Node's cluster with 2 workers and its round-robin scheduling
# (cluster.SCHED_RR, the default outside Windows); and one plain Node process for reference.
# Node's scripts are written to a mktemp dir at run time. Rounds are interleaved (lab07, node
# cluster, node, lab07…) so a burst of load from elsewhere on the machine hits every server alike.
# Targets (issue 3): lab07 >= 2 x Node's cluster; lab07's three processes <= 10 MiB together.
set -eu

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
AB_REQUESTS=${AB_REQUESTS:-20000}
AB_CONCURRENCY=${AB_CONCURRENCY:-32}

for tool in ab curl node python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench_cluster: $tool is not installed" >&2; exit 1; }
done
make -s lab07

tmp=$(mktemp -d /tmp/clusterlab-bench-cluster.XXXXXX)
server_pids=""
cleanup() {
    for p in $server_pids; do kill "$p" 2>/dev/null || true; done
    for p in $server_pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for a line matching $2 in file $1 (a ready line, never a sleep); fails after ~10 s.
wait_line() {
    i=0
    until grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 200 ] || { echo "bench_cluster: no '$2' in $1" >&2; cat "$1" >&2; exit 1; }
        sleep 0.05
    done
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }

# The process and its children: the master and its workers.
tree() { echo "$1"; pgrep -P "$1" || true; }
sum_kib() {  # pid field-regex file → the sum over the tree of that /proc field, in KiB
    total=0
    for p in $(tree "$1"); do
        v=$(awk -v f="$2" '$1 == f { print $2 }' "/proc/$p/$3" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# --- the servers --------------------------------------------------------------------------
./lab07 --workers 2 --port 0 >"$tmp/lab07.out" 2>"$tmp/lab07.log" &
lab07_pid=$!
server_pids="$lab07_pid"
wait_line "$tmp/lab07.out" 'listening on'
lab07_url="$(sed -n 's|^lab07 listening on \(http://[^ ]*\) pid=.*|\1|p' "$tmp/lab07.out")/"

cat >"$tmp/cluster.js" <<'EOF'
// Node's cluster, round-robin: the primary accepts and hands each connection to a worker.
const cluster = require('node:cluster');
const http = require('node:http');
cluster.schedulingPolicy = cluster.SCHED_RR;
const WORKERS = 2;
if (cluster.isPrimary) {
    let listening = 0;
    cluster.on('listening', (worker, address) => {
        if (++listening === WORKERS) console.log(`node-cluster listening on http://127.0.0.1:${address.port}`);
    });
    for (let i = 0; i < WORKERS; i++) cluster.fork();
} else {
    http.createServer((req, res) => {
        res.setHeader('X-Worker-Pid', String(process.pid));
        res.end('hello world\n');
    }).listen(0, '127.0.0.1');  // in a cluster, every worker gets the same port 0 picked
}
EOF
cat >"$tmp/single.js" <<'EOF'
// One Node process, for reference.
const http = require('node:http');
const server = http.createServer((req, res) => {
    res.setHeader('X-Worker-Pid', String(process.pid));
    res.end('hello world\n');
}).listen(0, '127.0.0.1', () => console.log(`node listening on http://127.0.0.1:${server.address().port}`));
EOF
node "$tmp/cluster.js" >"$tmp/cluster.out" 2>"$tmp/cluster.log" &
cluster_pid=$!
server_pids="$server_pids $cluster_pid"
node "$tmp/single.js" >"$tmp/single.out" 2>"$tmp/single.log" &
single_pid=$!
server_pids="$server_pids $single_pid"
wait_line "$tmp/cluster.out" 'listening on'
wait_line "$tmp/single.out" 'listening on'
cluster_url="$(sed -n 's|.*listening on \(http://[^ ]*\).*|\1|p' "$tmp/cluster.out")/"
single_url="$(sed -n 's|.*listening on \(http://[^ ]*\).*|\1|p' "$tmp/single.out")/"

targets="lab07 cluster single"
url_of() { eval echo "\$${1}_url"; }
pid_of() { eval echo "\$${1}_pid"; }
name_of() { case $1 in lab07) echo "lab07 (2 workers)" ;; cluster) echo "node cluster (2 workers)" ;; single) echo "node (1 process)" ;; esac; }

echo "clusterlab bench_cluster: $(nproc) CPUs, $(uname -r), node $(node --version)," \
     "load average at start:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"
echo "ab -n $AB_REQUESTS -c $AB_CONCURRENCY (a connection per request), $ROUNDS interleaved rounds"

for t in $targets; do ab -q -n 2000 -c "$AB_CONCURRENCY" "$(url_of "$t")" >/dev/null 2>&1 || true; done  # warm-up

r=1
while [ "$r" -le "$ROUNDS" ]; do
    for t in $targets; do
        out=$(ab -q -n "$AB_REQUESTS" -c "$AB_CONCURRENCY" "$(url_of "$t")" 2>&1)
        rps=$(echo "$out" | awk '/^Requests per second:/ { printf "%d", $4 }')
        failed=$(echo "$out" | awk '/^Failed requests:/ { print $3 }')
        [ "${failed:-x}" = 0 ] || echo "  warning: $t round $r: failed requests: ${failed:-?}" >&2
        echo "$rps" >>"$tmp/ab.$t"
        echo "  round $r  $(name_of "$t"): $rps req/s"
    done
    r=$((r + 1))
done

# --- the table ----------------------------------------------------------------------------
echo
printf '%-26s %12s %10s %12s %12s\n' "(medians of $ROUNDS runs)" "req/s" "processes" "RSS KiB" "PSS KiB"
for t in $targets; do
    pid=$(pid_of "$t")
    printf '%-26s %12s %10s %12s %12s\n' "$(name_of "$t")" "$(median <"$tmp/ab.$t")" \
        "$(tree "$pid" | wc -l)" "$(sum_kib "$pid" VmRSS: status)" "$(sum_kib "$pid" Pss: smaps_rollup)"
done

lab07_rps=$(median <"$tmp/ab.lab07")
cluster_rps=$(median <"$tmp/ab.cluster")
lab07_rss=$(sum_kib "$lab07_pid" VmRSS: status)
echo
awk -v a="$lab07_rps" -v b="$cluster_rps" 'BEGIN {
    printf "lab07 / node cluster: %.2fx  (target: at least 2x)  %s\n", a / b, (a >= 2 * b ? "met" : "MISSED") }'
awk -v m="$lab07_rss" 'BEGIN {
    printf "lab07 master + 2 workers: %.1f MiB RSS  (target: at most 10 MiB)  %s\n", m / 1024, (m <= 10240 ? "met" : "MISSED") }'
