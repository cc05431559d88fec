#!/bin/sh
# bench_reload.sh — lab14's rolling reload against `pm2 reload` of a Node cluster app, under the
# same load. Prints figures, never pass/fail: the targets are stated next to the measurements.
#
#   make lab14 loadgen && sh bench/bench_reload.sh          (ROUNDS=3 is the default)
#
# Servers, 2 workers each: ./lab14 --workers 2 --config FILE (SIGHUP reloads it), and
# bench/node_app.js under PM2 in cluster mode (`pm2 start node_app.js -i 2`, `pm2 reload`), with
# PM2's defaults (listen_timeout 3000 ms, kill_timeout 1600 ms), twice: `pm2` with the graceful
# SIGINT handler PM2's documentation asks apps to have, `pm2-plain` without it (GRACEFUL=0).
# PM2 comes from npm: $PM2 if set, else `npm install pm2` into a temporary prefix (PM2_HOME in
# the same temporary dir, so no daemon of anyone else's is touched); without npm, or if the
# install fails, PM2's rows are skipped with the reason.
#
# Each round, for each server and each load mode, all with ./loadgen --connections $CONNECTIONS:
# `close` GET / on a connection per request, `keepalive` GET / kept alive, `sleep`
# GET /sleep?ms=$SLEEP_MS on a connection per request (long requests in flight at every moment):
#   outside  loadgen for $OUTSIDE_S s, no reload: the worst latency outside reloads
#   during   loadgen runs; 1 s in, one reload (lab14: SIGHUP, until the log says `reload done`;
#            PM2: until `pm2 reload` returns); loadgen stops 1 s after the reload: the failed
#            requests, the reload's duration, the worst latency in a window that holds a reload
# Failed = transport errors (loadgen retries once a kept-alive connection the server closed
# before answering, as browsers do; retries are shown) + non-2xx answers.
# Targets (issue 13): 0 failed requests for lab14 in every run; worst latency during a reload
# at most 2x the worst outside.
set -eu

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-8}
OUTSIDE_S=${OUTSIDE_S:-3}
SLEEP_MS=${SLEEP_MS:-300}

for tool in curl node python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench_reload: $tool is not installed" >&2; exit 1; }
done
make -s lab14 loadgen

tmp=$(mktemp -d /tmp/clusterlab-bench-reload.XXXXXX)
lab_pid=""
pm2=""
export PM2_HOME="$tmp/pm2home"
cleanup() {
    [ -z "$lab_pid" ] || { kill "$lab_pid" 2>/dev/null || true; wait "$lab_pid" 2>/dev/null || true; }
    if [ -n "$pm2" ]; then
        "$pm2" kill >/dev/null 2>&1 || true
        # The daemon this script started, by its own pid file, if `pm2 kill` left it.
        [ -f "$PM2_HOME/pm2.pid" ] && kill "$(cat "$PM2_HOME/pm2.pid")" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }  # GNU date: milliseconds, without starting an interpreter

# Waits for a line matching $2 in file $1 (a ready line, a log event), polling every 10 ms.
wait_line() {
    i=0
    until grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 1500 ] || { echo "bench_reload: no '$2' in $1" >&2; tail -20 "$1" >&2; exit 1; }
        sleep 0.01
    done
}

# failed retries max_ms requests, from one loadgen JSON report.
summary() {
    python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(r["errors"]["total"] + r["non_2xx"], r["retries"], round(r["latency_ms"]["max"], 1), r["requests"])' "$1"
}

loadgen_args() {  # mode -> flags
    case $1 in keepalive) echo "--keepalive" ;; *) echo "" ;; esac
}

# --- lab14 --------------------------------------------------------------------------------
conf="$tmp/app.conf"
printf 'greeting=hello\nversion=1\n' >"$conf"
./lab14 --workers 2 --port 0 --config "$conf" >"$tmp/lab14.out" 2>"$tmp/lab14.log" &
lab_pid=$!
wait_line "$tmp/lab14.out" 'listening on'
lab_url="$(sed -n 's|^lab14 listening on \(http://[^ ]*\) pid=.*|\1|p' "$tmp/lab14.out")/"
echo 1 >"$tmp/generation"

# lab14's reload: write the next version, SIGHUP, wait for `reload done`. Prints the master's
# own figure (ms=) and the wall time seen from here.
reload_lab14() {
    generation=$(($(cat "$tmp/generation") + 1))  # a file: this runs in a $(...) subshell
    echo "$generation" >"$tmp/generation"
    printf 'greeting=hello\nversion=%s\n' "$generation" >"$conf"
    t0=$(now_ms)
    kill -HUP "$lab_pid"
    wait_line "$tmp/lab14.log" "reload done generation=$generation "
    t1=$(now_ms)
    ms=$(sed -n "s/.*reload done generation=$generation ms=\([0-9]*\).*/\1/p" "$tmp/lab14.log")
    echo "$ms $((t1 - t0))"
}

# --- PM2 ----------------------------------------------------------------------------------
pm2_skip=""
if [ -n "${PM2:-}" ]; then
    pm2=$PM2
elif command -v npm >/dev/null 2>&1; then
    echo "installing pm2 from npm into $tmp/pm2 ..."
    if npm install --prefix "$tmp/pm2" --no-audit --no-fund --loglevel=error pm2 >"$tmp/npm.log" 2>&1; then
        pm2="$tmp/pm2/node_modules/.bin/pm2"
    else
        pm2_skip="npm install pm2 failed: $(tail -1 "$tmp/npm.log")"
    fi
else
    pm2_skip="npm is not installed (apt-get install npm)"
fi
if [ -n "$pm2" ]; then
    pm2_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
    pm2_port=$(free_port)
    plain_port=$(free_port)
    PORT=$pm2_port "$pm2" start bench/node_app.js -i 2 --name clusterlab-reload >"$tmp/pm2-start.log" 2>&1 ||
        { pm2_skip="pm2 start failed: $(tail -3 "$tmp/pm2-start.log")"; }
    [ -n "$pm2_skip" ] || GRACEFUL=0 PORT=$plain_port "$pm2" start bench/node_app.js -i 2 --name clusterlab-reload-plain \
        >>"$tmp/pm2-start.log" 2>&1 || { pm2_skip="pm2 start failed: $(tail -3 "$tmp/pm2-start.log")"; }
    pm2_url="http://127.0.0.1:$pm2_port/"
    plain_url="http://127.0.0.1:$plain_port/"
    # Ready: both workers of each app answer (two distinct pids).
    for u in "$pm2_url" "$plain_url"; do
        i=0
        while [ -z "$pm2_skip" ]; do
            pids=$(for _ in 1 2 3 4 5 6 7 8; do curl -s "${u}pid" 2>/dev/null; done | sort -u | wc -l)
            [ "$pids" -ge 2 ] && break
            i=$((i + 1)); [ $i -lt 100 ] || { pm2_skip="the PM2 app at $u never answered from 2 workers"; break; }
            sleep 0.1
        done
    done
fi
[ -z "$pm2_skip" ] || pm2=""

# What `pm2 <command>` costs by itself (the CLI is a Node program that talks to the daemon):
# subtract it from `pm2 reload`'s wall time to compare with lab14's own figure.
pm2_cli_ms() {
    t0=$(now_ms)
    "$pm2" jlist >/dev/null 2>&1
    t1=$(now_ms)
    echo $((t1 - t0))
}

reload_pm2() {  # app name
    t0=$(now_ms)
    "$pm2" reload "$1" >"$tmp/pm2-reload.log" 2>&1
    t1=$(now_ms)
    echo "- $((t1 - t0))"
}

# --- the runs -----------------------------------------------------------------------------
echo "clusterlab bench_reload: $(nproc) CPUs, $(uname -r), node $(node --version)${pm2:+, pm2 $("$pm2" --version 2>/dev/null | tail -1)}," \
     "load average at start:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"
echo "./loadgen --connections $CONNECTIONS; outside: ${OUTSIDE_S} s without a reload; during: 1 s, one reload, 1 s; $ROUNDS rounds"
[ -z "$pm2_skip" ] || echo "PM2 skipped: $pm2_skip"
[ -z "$pm2" ] || echo "pm2 CLI alone (pm2 jlist, 3 runs): $(pm2_cli_ms) $(pm2_cli_ms) $(pm2_cli_ms) ms"

servers="lab14"
[ -z "$pm2" ] || servers="lab14 pm2 pm2-plain"
url_of() { case $1 in lab14) echo "$lab_url" ;; pm2) echo "$pm2_url" ;; pm2-plain) echo "$plain_url" ;; esac; }

# one_run server mode round: appends "server mode round failed_out max_out failed_in retries_in max_in reload_ms wall_ms"
one_run() {
    s=$1 mode=$2 r=$3
    url=$(url_of "$s")
    [ "$mode" != sleep ] || url="${url}sleep?ms=$SLEEP_MS"
    # shellcheck disable=SC2046
    ./loadgen --json --connections "$CONNECTIONS" --duration "$OUTSIDE_S" $(loadgen_args "$mode") "$url" >"$tmp/out.json"
    set -- $(summary "$tmp/out.json")
    failed_out=$1 max_out=$3
    # shellcheck disable=SC2046
    ./loadgen --json --connections "$CONNECTIONS" --duration 120 $(loadgen_args "$mode") "$url" >"$tmp/in.json" &
    lg=$!
    sleep 1
    case $s in
        lab14) times=$(reload_lab14) ;;
        pm2) times=$(reload_pm2 clusterlab-reload) ;;
        pm2-plain) times=$(reload_pm2 clusterlab-reload-plain) ;;
    esac
    sleep 1
    kill -INT "$lg"
    wait "$lg" || true
    set -- $(summary "$tmp/in.json")
    failed_in=$1 retries_in=$2 max_in=$3
    set -- $times
    echo "$s $mode $r $failed_out $max_out $failed_in $retries_in $max_in $1 $2" >>"$tmp/results"
    printf '  round %s  %-9s %-9s  outside: %3s failed, worst %7s ms | during: %3s failed (%s retried), worst %7s ms, reload %s ms (wall %s ms)\n' \
        "$r" "$s" "$mode" "$failed_out" "$max_out" "$failed_in" "$retries_in" "$max_in" "$1" "$2"
}

: >"$tmp/results"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for s in $servers; do
        for mode in close keepalive sleep; do one_run "$s" "$mode" "$r"; done
    done
    r=$((r + 1))
done

# --- the table ----------------------------------------------------------------------------
echo
python3 - "$tmp/results" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def num(x):
    return None if x == "-" else float(x)
print(f"{'(all rounds)':<22} {'failed during':>14} {'reload ms (median)':>19} {'wall ms':>8} {'worst outside':>14} {'worst during':>13} {'during/outside':>15}")
verdict = []
for server in dict.fromkeys(r[0] for r in rows):
    for mode in ("close", "keepalive", "sleep"):
        rs = [r for r in rows if r[0] == server and r[1] == mode]
        if not rs:
            continue
        failed = [int(r[5]) for r in rs]
        reload_ms = [num(r[8]) for r in rs if num(r[8]) is not None]
        wall = [num(r[9]) for r in rs]
        out = max(num(r[4]) for r in rs)
        inn = max(num(r[7]) for r in rs)
        ratios = [num(r[7]) / max(num(r[4]), 0.001) for r in rs]
        print(f"{server + ' ' + mode:<22} {','.join(map(str, failed)):>14} "
              f"{(str(round(statistics.median(reload_ms))) if reload_ms else '-'):>19} {round(statistics.median(wall)):>8} "
              f"{out:>11.1f} ms {inn:>10.1f} ms {statistics.median(ratios):>14.2f}x")
        if server == "lab14":
            verdict.append((mode, sum(failed), statistics.median(ratios)))
print()
for mode, failed, ratio in verdict:
    print(f"lab14 {mode}: {failed} failed in all runs (target 0) {'met' if failed == 0 else 'MISSED'}; "
          f"worst during / worst outside, median of the rounds: {ratio:.2f}x (target <= 2x) {'met' if ratio <= 2 else 'MISSED'}")
EOF
