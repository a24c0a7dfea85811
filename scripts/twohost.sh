# Two simulated hosts on one machine, for the two-host benchmark and the cross-host fault test
# (sourced, not run): two network namespaces joined by a veth pair, and the embedding pipeline's
# stages started in them with `ip netns exec NS taskset -c CORE slidestream ...` — the head
# (tiler, bag-builder, cache-writer and one worker pair) on host 1, workers (a cell-cropper and
# an encoder) on any host, tcp between them, with CURVE when TWOHOST_SEC says --keys DIR.
# Needs root (ip netns) and taskset. Every namespace is named after TWOHOST (set by
# twohost_up) so that concurrent users do not meet, and twohost_down removes what it made.
#
#   twohost_up                     makes $TWOHOST-1 (10.77.N.1) and $TWOHOST-2 (10.77.N.2)
#   twohost_head NS CORE DIR CK MANIFEST CACHE
#                                  start the head's stages on NS, logs and bags in DIR (the
#                                  cache-writer's pid in TWOHOST_CACHE_PID)
#   twohost_workers NS CORE DIR CK TAG
#                                  start one cell-cropper and one encoder on NS
#   twohost_down                   stop whatever runs in the namespaces, delete them

twohost_up() {
  local n=$(( ($$ % 200) + 20 ))
  TWOHOST=ssh$$
  TWOHOST_IP1=10.77.$n.1
  TWOHOST_IP2=10.77.$n.2
  ip netns add "$TWOHOST-1" && ip netns add "$TWOHOST-2" || return 1
  ip link add "${TWOHOST}a" type veth peer name "${TWOHOST}b" || return 1
  ip link set "${TWOHOST}a" netns "$TWOHOST-1" && ip link set "${TWOHOST}b" netns "$TWOHOST-2" || return 1
  ip -n "$TWOHOST-1" addr add "$TWOHOST_IP1/24" dev "${TWOHOST}a" &&
    ip -n "$TWOHOST-2" addr add "$TWOHOST_IP2/24" dev "${TWOHOST}b" || return 1
  local ns
  for ns in "$TWOHOST-1" "$TWOHOST-2"; do
    ip -n "$ns" link set lo up || return 1
  done
  ip -n "$TWOHOST-1" link set "${TWOHOST}a" up && ip -n "$TWOHOST-2" link set "${TWOHOST}b" up
}

twohost_down() {
  [ -n "${TWOHOST:-}" ] || return 0
  local ns pid
  for ns in "$TWOHOST-1" "$TWOHOST-2"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns delete "$ns" 2>/dev/null
  done
  TWOHOST=""
}

# Flags: TWOHOST_SEC for every stage (--keys DIR, or --insecure for plain tcp); TWOHOST_TILER,
# TWOHOST_CROPPER, TWOHOST_ENCODER for one kind of stage; TWOHOST_IDLE, the cache-writer's
# --idle-timeout (default 60).
twohost_on() { # NS CORE slidestream-args...
  local ns=$1 core=$2
  shift 2
  ip netns exec "$ns" taskset -c "$core" "${SLIDESTREAM:?}" "$@"
}

# The head binds on host 1's address: its tcp ports 7000..7005. Logs go to DIR/logs/.
twohost_head() { # NS CORE DIR CHECKPOINT MANIFEST CACHE
  local ns=$1 core=$2 dir=$3 ck=$4 manifest=$5 cache=$6 ip=$TWOHOST_IP1
  mkdir -p "$dir/logs"
  twohost_on "$ns" "$core" cache-writer --in "@tcp://$ip:7003" --control "@tcp://$ip:7004" \
    --dir "$cache" --checkpoint "$ck" --idle-timeout "${TWOHOST_IDLE:-60}" --name cache \
    ${TWOHOST_SEC:-} > "$dir/logs/cache.log" 2>&1 &
  TWOHOST_CACHE_PID=$!
  twohost_on "$ns" "$core" bag-builder --in "@tcp://$ip:7001" --control "@tcp://$ip:7002" \
    --out "@tcp://$ip:7005" --next ">tcp://$ip:7004" --bags-dir "$dir/bags" --name bags \
    ${TWOHOST_SEC:-} > "$dir/logs/bags.log" 2>&1 &
  twohost_on "$ns" "$core" tiler --manifest "$manifest" --out "@tcp://$ip:7000" \
    --control ">tcp://$ip:7002" --target-mpp 0.25 --cache-dir "$cache" --checkpoint "$ck" \
    --name tiler ${TWOHOST_SEC:-} ${TWOHOST_TILER:-} > "$dir/logs/tiler.log" 2>&1 &
}

twohost_workers() { # NS CORE DIR CHECKPOINT TAG
  local ns=$1 core=$2 dir=$3 ck=$4 tag=$5 ip=$TWOHOST_IP1
  mkdir -p "$dir/logs"
  twohost_on "$ns" "$core" cell-cropper --in ">tcp://$ip:7000" --out ">tcp://$ip:7001" \
    --control ">tcp://$ip:7002" --name "cropper.$tag" ${TWOHOST_SEC:-} ${TWOHOST_CROPPER:-} \
    > "$dir/logs/cropper.$tag.log" 2>&1 &
  twohost_on "$ns" "$core" encoder --checkpoint "$ck" --in ">tcp://$ip:7005" \
    --out ">tcp://$ip:7003" --threads 1 --name "encoder.$tag" ${TWOHOST_SEC:-} ${TWOHOST_ENCODER:-} \
    > "$dir/logs/encoder.$tag.log" 2>&1 &
}

# Kill (SIGKILL) the processes in NS whose command line has the word WORD (encoder, ...); prints
# how many.
twohost_kill() { # NS WORD
  local pid n=0
  for pid in $(ip netns pids "$1" 2>/dev/null); do
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qw -- "$2"; then
      kill -9 "$pid" 2>/dev/null && n=$((n + 1))
    fi
  done
  echo "$n"
}

# Stop (SIGTERM, then SIGKILL) everything still running in both namespaces.
twohost_stop() {
  local ns pid
  for ns in "$TWOHOST-1" "$TWOHOST-2"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
  done
  sleep 1
  for ns in "$TWOHOST-1" "$TWOHOST-2"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  done
  wait 2>/dev/null
}

# CPU seconds (user + system) used so far by the processes still running in NS.
twohost_cpu() { # NS
  local pid t=0
  for pid in $(ip netns pids "$1" 2>/dev/null); do
    t=$(awk -v t="$t" -v hz="$(getconf CLK_TCK)" '{print t + ($14 + $15) / hz}' "/proc/$pid/stat" 2>/dev/null || echo "$t")
  done
  echo "$t"
}
