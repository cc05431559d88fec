#!/bin/sh
# bench_proxy.sh — lab12's relaying master against nginx proxying to the same workers; copy vs
# splice; and what the relay costs against lab07's hand-off. Prints figures, never pass/fail:
# the goals are stated next to the measurements.
#
#   make lab12 lab07 loadgen && sh bench/bench_proxy.sh        (ROUNDS=3 is the default)
#
#  1. small answers (GET /, 12 bytes), medians of ROUNDS interleaved runs:
#       keep-alive          wrk -t1 -c64 -d${WRK_SECONDS}s                     requests/s
#       a connection each   ab -n $AB_REQUESTS -c 32                           requests/s
#     through lab12's master (--relay copy and --relay splice) and through nginx (1 worker,
#     proxy_pass to an upstream over the SAME two lab12 workers, keepalive 32 to them: the
#     configuration ./lab12 --print-nginx-conf prints), the same nginx without `keepalive` to the
#     upstreams (a new worker connection per client connection, as lab12 must), and straight to
#     one worker for reference.
#  2. large answers: wrk -t1 -c8 keep-alive on /bytes?n=1000000 and /bytes?n=8000000: MB/s
#     (bounded by the two workers that build the answers) and the relaying process's CPU time
#     per GB relayed: lab12 --relay copy, --relay splice (and nginx's worker, for reference).
#  3. the price of relaying, against lab07 (the master hands each connection to a worker):
#     1,000 concurrent clients on /sleep?ms=500, 5,000 requests, a connection per request
#     (loadgen): the master's peak descriptor count and its CPU time per request (utime+stime
#     from /proc/PID/stat, before and after).
# Goals (issue 11): lab12 at least as fast as nginx's proxy_pass; splice ahead of copy on large
# bodies.
set -eu

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
WRK_SECONDS=${WRK_SECONDS:-4}
AB_REQUESTS=${AB_REQUESTS:-10000}

for tool in wrk ab curl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench_proxy: $tool is not installed" >&2; exit 1; }
done
NGINX=$(command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
[ -n "$NGINX" ] || echo "bench_proxy: nginx is not installed (apt-get install nginx-light): its rows are skipped" >&2
make -s lab12 lab07 loadgen

tmp=$(mktemp -d /tmp/clusterlab-bench-proxy.XXXXXX)
chmod 755 "$tmp"
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
        i=$((i + 1)); [ $i -lt 200 ] || { echo "bench_proxy: no '$2' in $1" >&2; cat "$1" >&2; exit 1; }
        sleep 0.05
    done
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }  # utime + stime, in clock ticks

# --- the servers --------------------------------------------------------------------------
start_lab() {  # name args… → $tmp/name.out/.log; sets ${name}_pid and ${name}_url
    name=$1; shift
    "$@" --port 0 >"$tmp/$name.out" 2>"$tmp/$name.log" &
    eval "${name}_pid=$!"
    server_pids="$server_pids $!"
    wait_line "$tmp/$name.out" 'listening on'
    eval "${name}_url=$(sed -n 's|^lab[0-9]* listening on \(http://[^ ]*\) pid=.*|\1|p' "$tmp/$name.out")"
}
start_lab copy ./lab12 --workers 2 --relay copy --print-nginx-conf
start_lab splice ./lab12 --workers 2 --relay splice
start_lab lab07 ./lab07 --workers 2
# One of lab12's workers, straight (what either proxy adds is measured against it).
wait_line "$tmp/copy.out" '^}'
direct_url="http://127.0.0.1:$(sed -n 's|.*server 127.0.0.1:\([0-9]*\) .*|\1|p' "$tmp/copy.out" | head -1)"

targets="copy splice direct"
if [ -n "$NGINX" ]; then
    # nginx in front of copy's two workers, with the configuration lab12 printed (one worker
    # process, keepalive 32 to the upstreams); only the listen port and the log change.
    nginx_port=$(free_port)
    sed -n '/^# nginx in front/,$p' "$tmp/copy.out" |
        sed -e "s|listen [^;]*;|listen 127.0.0.1:$nginx_port;|" -e 's|error_log stderr;|error_log error.log;|' \
            >"$tmp/nginx.conf"
    mkdir -p "$tmp/nginx"
    chmod 755 "$tmp/nginx"
    "$NGINX" -p "$tmp/nginx/" -e "$tmp/nginx/error.log" -c "$tmp/nginx.conf" >/dev/null 2>&1 &
    nginx_pid=$!
    server_pids="$server_pids $nginx_pid"
    i=0
    until curl -s -o /dev/null "http://127.0.0.1:$nginx_port/"; do
        i=$((i + 1)); [ $i -lt 200 ] || { echo "bench_proxy: nginx did not start" >&2; cat "$tmp/nginx/error.log" >&2; exit 1; }
        sleep 0.05
    done
    nginx_url="http://127.0.0.1:$nginx_port"
    # The same without `keepalive` to the upstreams: like lab12, a new connection to a worker
    # for every client connection (what a relay that does not parse HTTP has to do).
    nokeep_port=$(free_port)
    sed -e "s|listen [^;]*;|listen 127.0.0.1:$nokeep_port;|" -e '/keepalive 32;/d' "$tmp/nginx.conf" >"$tmp/nokeep.conf"
    mkdir -p "$tmp/nokeep"
    chmod 755 "$tmp/nokeep"
    "$NGINX" -p "$tmp/nokeep/" -e "$tmp/nokeep/error.log" -c "$tmp/nokeep.conf" >/dev/null 2>&1 &
    nokeep_pid=$!
    server_pids="$server_pids $nokeep_pid"
    i=0
    until curl -s -o /dev/null "http://127.0.0.1:$nokeep_port/"; do
        i=$((i + 1)); [ $i -lt 200 ] || { echo "bench_proxy: nginx did not start" >&2; cat "$tmp/nokeep/error.log" >&2; exit 1; }
        sleep 0.05
    done
    nokeep_url="http://127.0.0.1:$nokeep_port"
    targets="copy splice nginx nokeep direct"
fi
url_of() { eval echo "\$${1}_url"; }
name_of() {
    case $1 in
    copy) echo "lab12 master, copy" ;; splice) echo "lab12 master, splice" ;;
    nginx) echo "nginx proxy_pass (1 worker)" ;; direct) echo "one worker, no proxy" ;;
    nokeep) echo "nginx, no upstream keepalive" ;;
    esac
}

wrk_rps() { wrk -t1 -c"$2" -d"${WRK_SECONDS}s" "$1" 2>&1 | awk '/^Requests\/sec:/ { printf "%d", $2 }'; }
ab_rps() {
    out=$(ab -q -n "$AB_REQUESTS" -c 32 "$1" 2>&1)
    failed=$(echo "$out" | awk '/^Failed requests:/ { print $3 }')
    [ "${failed:-x}" = 0 ] || echo "  warning: $1: failed requests: ${failed:-?}" >&2
    echo "$out" | awk '/^Requests per second:/ { printf "%d", $4 }'
}

echo "clusterlab bench_proxy: $(nproc) CPUs, $(uname -r), $([ -n "$NGINX" ] && "$NGINX" -v 2>&1 | sed 's|.*/||')," \
     "load average at start:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"
echo "every lab12 master and nginx relay to 2 lab12 workers; $ROUNDS interleaved rounds, medians"

for t in $targets; do wrk -t1 -c16 -d1s "$(url_of "$t")/" >/dev/null 2>&1 || true; done  # warm-up

# --- 1. small answers ---------------------------------------------------------------------
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for t in $targets; do
        k=$(wrk_rps "$(url_of "$t")/" 64)
        a=$(ab_rps "$(url_of "$t")/")
        echo "$k" >>"$tmp/wrk.$t"
        echo "$a" >>"$tmp/ab.$t"
        echo "  round $r  $(name_of "$t"): wrk -k $k req/s, ab $a req/s"
    done
    r=$((r + 1))
done

# --- 2. large answers ---------------------------------------------------------------------
# Throughput here is bounded by the workers, which build every answer; the proxy's own cost is
# its CPU time per GB relayed (utime+stime of the relaying process over the run).
big_targets="copy splice"
[ -n "$NGINX" ] && big_targets="copy splice nginx"
relay_pid() { if [ "$1" = nginx ]; then pgrep -P "$nginx_pid" | head -1; else eval echo "\$${1}_pid"; fi; }
for size in 1000000 8000000; do
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for t in $big_targets; do
            pid=$(relay_pid "$t")
            before=$(cpu_ticks "$pid")
            out=$(wrk -t1 -c8 -d"${WRK_SECONDS}s" "$(url_of "$t")/bytes?n=$size" 2>&1)
            after=$(cpu_ticks "$pid")
            n=$(echo "$out" | awk '/requests in/ { print $1 }')
            secs=$(echo "$out" | awk '/requests in/ { sub(/s,$/, "", $4); print $4 }')
            mbs=$(awk -v r="$n" -v s="$secs" -v n="$size" 'BEGIN { printf "%d", r * n / s / 1e6 }')
            cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v r="$n" -v n="$size" \
                  'BEGIN { printf "%d", (r > 0 ? t / hz * 1000 / (r * n / 1e9) : 0) }')
            echo "$mbs" >>"$tmp/big$size.$t"
            echo "$cpu" >>"$tmp/cpu$size.$t"
            echo "  round $r  $(name_of "$t"): /bytes?n=$size  $mbs MB/s, $cpu ms of its CPU per GB"
        done
        r=$((r + 1))
    done
done

# --- 3. the price: 1,000 concurrent sleepers, lab07 against lab12 --------------------------
sleepers() {  # target → "peak_fds ticks requests"
    pid=$(eval echo "\$${1}_pid")
    before=$(cpu_ticks "$pid")
    ./loadgen --connections 1000 --requests 5000 --timeout 20000 "$(url_of "$1")/sleep?ms=500" >"$tmp/sleep.$1" 2>&1 &
    lg=$!
    peak=0
    while kill -0 "$lg" 2>/dev/null; do
        n=$(ls "/proc/$pid/fd" | wc -l)
        [ "$n" -gt "$peak" ] && peak=$n
        sleep 0.05
    done
    wait "$lg" || echo "  warning: loadgen against $1 failed" >&2
    after=$(cpu_ticks "$pid")
    done_n=$(awk '/^requests:/ { print $2 }' "$tmp/sleep.$1")
    echo "$peak $((after - before)) ${done_n:-0}"
}
hz=$(getconf CLK_TCK)
for t in lab07 copy; do
    idle=$(ls "/proc/$(eval echo "\$${t}_pid")/fd" | wc -l)
    set -- $(sleepers "$t")
    echo "$idle $1 $2 $3" >"$tmp/price.$t"
done

# --- the tables ---------------------------------------------------------------------------
echo
printf '%-30s %16s %16s\n' "GET / (medians of $ROUNDS)" "wrk -k req/s" "ab req/s"
for t in $targets; do
    printf '%-30s %16s %16s\n' "$(name_of "$t")" "$(median <"$tmp/wrk.$t")" "$(median <"$tmp/ab.$t")"
done
echo
printf '%-30s %16s %16s %16s %16s\n' "keep-alive (medians)" "1 MB: MB/s" "CPU ms/GB" "8 MB: MB/s" "CPU ms/GB"
for t in $big_targets; do
    printf '%-30s %16s %16s %16s %16s\n' "$(name_of "$t")" "$(median <"$tmp/big1000000.$t")" \
        "$(median <"$tmp/cpu1000000.$t")" "$(median <"$tmp/big8000000.$t")" "$(median <"$tmp/cpu8000000.$t")"
done
echo
printf '%-30s %10s %10s %18s\n' "1,000 clients on /sleep?ms=500" "fds idle" "fds peak" "master CPU/request"
for t in lab07 copy; do
    read -r idle peak ticks n <"$tmp/price.$t"
    label=$([ "$t" = lab07 ] && echo "lab07 master (hands off)" || echo "lab12 master (relays)")
    awk -v l="$label" -v i="$idle" -v p="$peak" -v k="$ticks" -v n="$n" -v hz="$hz" 'BEGIN {
        printf "%-30s %10d %10d %15.1f us  (%d requests)\n", l, i, p, (n > 0 ? k / hz / n * 1e6 : 0), n }'
done

echo
m() { median <"$tmp/$1"; }
if [ -n "$NGINX" ]; then
    awk -v a="$(m wrk.copy)" -v b="$(m wrk.nginx)" -v c="$(m ab.copy)" -v d="$(m ab.nginx)" 'BEGIN {
        printf "lab12 (copy) / nginx: keep-alive %.2fx, a connection per request %.2fx  (goal: at least 1x)  %s\n",
               a / b, c / d, (a >= b && c >= d ? "met" : "MISSED") }'
    awk -v a="$(m ab.copy)" -v b="$(m ab.nokeep)" 'BEGIN {
        printf "lab12 (copy) / nginx without upstream keepalive, a connection per request: %.2fx\n", a / b }'
fi
awk -v a="$(m cpu1000000.splice)" -v b="$(m cpu1000000.copy)" -v c="$(m cpu8000000.splice)" -v d="$(m cpu8000000.copy)" 'BEGIN {
    printf "splice / copy, the relaying process CPU per GB: 1 MB answers %.2fx, 8 MB answers %.2fx  (goal: below 1x)  %s\n",
           a / b, c / d, (a < b && c < d ? "met" : "MISSED") }'
awk -v a="$(m big1000000.splice)" -v b="$(m big1000000.copy)" -v c="$(m big8000000.splice)" -v d="$(m big8000000.copy)" 'BEGIN {
    printf "splice / copy, MB/s (bounded by the workers): 1 MB answers %.2fx, 8 MB answers %.2fx\n", a / b, c / d }'
read -r _ p7 k7 n7 <"$tmp/price.lab07"
read -r _ p12 k12 n12 <"$tmp/price.copy"
awk -v p7="$p7" -v p12="$p12" -v k7="$k7" -v k12="$k12" -v n7="$n7" -v n12="$n12" 'BEGIN {
    printf "lab12 / lab07 at 1,000 sleepers: %.1fx the descriptors, %.2fx the master CPU per request\n",
           p12 / p7, (k12 / n12) / (k7 > 0 ? k7 / n7 : 1 / n7) }'
