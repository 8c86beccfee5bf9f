#!/bin/bash
# The check run before resolving anything that touches nodes, as a user runs it:
# `netlab up --nodes 10 --shards 31`, two minutes idle, `netlab status`, `top`, the CPU the ten
# node processes used (from /proc), then an 8 MiB file stored and read back with the CLI, timed,
# and another with `p2pwalrus daemon` running.
# Usage: bench/netlab_check.sh [NODES] [SHARDS] [IDLE_SECONDS]   (from the repository root)
set -u
N=${1:-10}; S=${2:-31}; IDLE=${3:-120}
BIN=${BIN:-.venv/bin}
L=${LAB:-/tmp/netlab-check}
$BIN/netlab down --dir $L >/dev/null 2>&1
rm -rf $L
/usr/bin/time -f "netlab up: %e s" $BIN/netlab up --nodes $N --shards $S --dir $L 2>&1 | tail -2
PIDS=$(pgrep -f "network $L/network.toml" | tr '\n' ' ')
ticks() { for p in $PIDS; do awk '{print $14+$15}' /proc/$p/stat 2>/dev/null; done | awk '{t+=$1} END{print t+0}'; }
T0=$(ticks); sleep $IDLE; T1=$(ticks)
echo "idle $IDLE s: $(echo $PIDS | wc -w) node processes used $(echo "scale=2; ($T1-$T0)*100/$(getconf CLK_TCK)/$IDLE" | bc)% of one core together"
top -b -n1 -p $(echo $PIDS | tr ' ' ',') | tail -$((N + 2))
$BIN/netlab status --dir $L 2>&1 | tail -$((N + 6))
export P2PWALRUS_CLIENT_DIR=$L/client
F=$L/file8m; head -c 8388608 /dev/urandom > $F
NET=$L/network.toml
/usr/bin/time -f "store 8 MiB: %e s wall" $BIN/p2pwalrus --network $NET store $F 2>&1 | tail -4
BID=$($BIN/p2pwalrus --network $NET blob-id $F 2>/dev/null | tail -1 | awk '{print $NF}')
/usr/bin/time -f "read 8 MiB: %e s wall" $BIN/p2pwalrus --network $NET read $BID --out $F.out 2>&1 | tail -2
cmp $F $F.out && echo "read back byte-exact"
# The same with `p2pwalrus daemon` running (README: a faster CLI), on another 8 MiB file.
$BIN/p2pwalrus --network $NET daemon 2>$L/daemon.log &
DAEMON=$!
for i in $(seq 100); do ls $L/client/daemon/*.sock >/dev/null 2>&1 && break; sleep 0.2; done; sleep 0.5
head -c 8388608 /dev/urandom > $F.2
/usr/bin/time -f "store 8 MiB with the daemon: %e s wall" $BIN/p2pwalrus --network $NET store $F.2 2>&1 | tail -3
BID=$($BIN/p2pwalrus --network $NET blob-id $F.2 2>/dev/null | tail -1 | awk '{print $NF}')
/usr/bin/time -f "read 8 MiB with the daemon: %e s wall" $BIN/p2pwalrus --network $NET read $BID --out $F.2.out 2>&1 | tail -2
cmp $F.2 $F.2.out && echo "read back byte-exact"
kill $DAEMON; wait $DAEMON 2>/dev/null
uptime
[ -n "${KEEP:-}" ] || $BIN/netlab down --dir $L >/dev/null 2>&1
