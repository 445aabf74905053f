# Shared by scripts/bench's sections (sourced, not run): starting and stopping
# servers, driving wrk, and the rows each section records for stats.py.
# A section records one line per measurement in $WORK/rows.<name> and hands
# that file to stats.py, which owns every median, ratio and table; the
# sections themselves only start servers and run load.
# Expects BENCH_D, TARGET, THREADS, CONN, DUR and ROUNDS to be set.

stats() { python3 "$BENCH_D/stats.py" "$@"; }
probe() { python3 "$BENCH_D/probe.py" "$@"; }
bodies() { python3 "$BENCH_D/bodies.py" "$@"; }

# want SECTION: whether SECTIONS (comma-separated, or all) names it.
# `soak` runs only when named: it takes an hour.
want() { { [ "$SECTIONS" = all ] && [ "$1" != soak ]; } || [[ ",$SECTIONS," == *",$1,"* ]]; }

# bench_init: a scratch directory ($WORK) and a trap that stops every server
# started through this file (their pids are in PIDS) and removes it.
bench_init() {
  WORK=$(mktemp -d)
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${PIDS[@]:-}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}

free_port() { probe free-port; }

# lua BODY [CONTENT_TYPE]: wrk's POST script with BODY inline.
lua() {
  cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = "$1"
wrk.headers["Content-Type"] = "${2:-text/plain}"
LUA
}

# lua_get: wrk's script for a plain GET (probes, bare hyper's GET).
lua_get() {
  echo 'wrk.method = "GET"' > "$WORK/post.lua"
}

# lua_file FILE CONTENT_TYPE: wrk's POST script with FILE's bytes as the body.
lua_file() {
  cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
local f = assert(io.open("$1", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "$2"
LUA
}

# run_wrk LABEL URL: prints "label rps p50_ms p99_ms non2xx".
run_wrk() {
  wrk -t"$THREADS" -c"$CONN" -d"${DUR}s" --latency -s "$WORK/post.lua" "$2" | stats wrk "$1"
}

# warm URL: 2 s of load before a measurement that counts CPU time.
warm() { wrk -t"$THREADS" -c"$CONN" -d2s -s "$WORK/post.lua" "$1" >/dev/null; }

wait_ready() { # $1 = port ; prints ms until /readyz 200
  local start
  start=$(date +%s%N)
  for _ in $(seq 1 2000); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ]; then
      echo $(( ($(date +%s%N) - start) / 1000000 )); return 0
    fi
    sleep 0.005
  done
  echo "never"; return 1
}

start_tiffin() { # $1 = port, rest = command ; sets TPID
  local port=$1; shift
  "$@" --host 127.0.0.1 --port "$port" 2>"$WORK/log.$port" &
  TPID=$!; PIDS+=("$TPID")
}

# serve PORT_VAR COMMAND...: a tiffin command on a free port, ready; the
# port goes into the variable named PORT_VAR, the supervisor's pid into TPID.
serve() {
  local var=$1; shift
  local port
  port=$(free_port); start_tiffin "$port" "$@"; wait_ready "$port" >/dev/null
  printf -v "$var" %s "$port"
}

# start_ref BINARY: one of the reference servers (bare_hyper, bare_hop) on a
# free port; sets REF_PORT and REF_PID.
start_ref() {
  REF_PORT=$(free_port)
  "$1" "127.0.0.1:$REF_PORT" 2>/dev/null & REF_PID=$!; PIDS+=("$REF_PID")
  sleep 0.3
}

# field N LINE: the Nth (from 0) whitespace-separated field of LINE.
field() { local f; read -ra f <<< "$2"; echo "${f[$1]:-}"; }

stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# builds: "name:binary" for this build, then the baseline's when
# TIFFIN_BASELINE is set; odd rounds measure this build first, even rounds
# the baseline first, so neither always runs right after the references.
builds() { # $1 = round
  if [ -z "$BASELINE" ]; then echo "this:$BIN"
  elif [ $(( $1 % 2 )) = 1 ]; then echo "this:$BIN baseline:$BASELINE"
  else echo "baseline:$BASELINE this:$BIN"; fi
}

# runner_workers PORT RUNNER: tiffin_supervisor_workers of that runner now.
runner_workers() {
  curl -s "http://127.0.0.1:$1/metrics" \
    | awk -v r="runner_name=\"$2\"" '/^tiffin_supervisor_workers\{/ && /role="runner"/ && index($0, r) {print $NF + 0}'
}

# batching_on_off LABEL PATH CONTENT_TYPE BODY CMD... : the service CMD runs
# with runners.batching.enabled=true and =false ($ROUNDS interleaved rounds,
# max_latency_ms=100); prints each round, the mean batch size and the medians.
# BODY is the body itself, or @FILE for a file's bytes.
batching_on_off() {
  local label=$1 path=$2 ctype=$3 body=$4; shift 4
  if [[ $body == @* ]]; then lua_file "${body#@}" "$ctype"; else lua "$body" "$ctype"; fi
  local rows=$WORK/rows.batching.$label mode enabled r P
  : > "$rows"
  for round in $(seq 1 "$ROUNDS"); do
    for mode in on off; do
      enabled=true; [ "$mode" = off ] && enabled=false
      TIFFIN_CONFIG_OPTIONS="runners.batching.enabled=$enabled runners.batching.max_latency_ms=100" serve P "$@"
      r=$(run_wrk "${label}_batching_$mode" "http://127.0.0.1:$P$path"); echo "  round $round: $r"
      echo "$r" >> "$rows"
      [ "$mode" = off ] || curl -s "http://127.0.0.1:$P/metrics" | stats batch-size
      stop "$TPID"
    done
  done
  stats batching "$label" "$rows"
}
