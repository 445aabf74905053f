# cost: CPU time per request, the CPU seconds (user + system, /proc/<pid>/stat)
# that every process of the server used during one wrk run, over the requests
# it answered. Unlike req/s this barely moves when other work shares the
# machine, so it compares builds (COST_BIN=path/to/other/tiffin, by default
# TIFFIN_BASELINE) on a busy box too.
echo "== CPU time per request (all server processes), $ROUNDS interleaved rounds"
ROWS=$WORK/rows.cost
: > "$ROWS"
cost_run() { # $1 = label, $2 = url, rest = pids ; records "label cpu_us_per_req rps non2xx"
  local label=$1 url=$2 before after out r bad
  shift 2
  warm "$url"
  before=$(probe ticks "$@")
  out=$(wrk -t"$THREADS" -c"$CONN" -d"${DUR}s" -s "$WORK/post.lua" "$url")
  after=$(probe ticks "$@")
  r=$(stats wrk-cost "$label" "$before" "$after" "$CLK_TCK" <<< "$out")
  echo "$r" >> "$ROWS"
  bad=$(field 3 "$r")
  [ "$bad" = 0 ] || echo "   $label: $bad non-2xx answers"
}
COST_BIN=${COST_BIN:-$BASELINE}
COST_BUILDS=("this:$BIN"); [ -n "$COST_BIN" ] && COST_BUILDS+=("other:$COST_BIN")
for _ in $(seq 1 "$ROUNDS"); do
  start_ref "$BARE"; lua "hello"; cost_run bare_hyper "http://127.0.0.1:$REF_PORT/echo" "$REF_PID"
  stop "$REF_PID"
  for build in "${COST_BUILDS[@]}"; do
    name=${build%%:*}; bin=${build#*:}
    for svc in echo sentiment_analyzer; do
      serve P "$bin" serve-http "$svc"
      if [ "$svc" = echo ]; then lua "hello"; path=/echo; else lua "I love this product!"; path=/analysis; fi
      cost_run "${name}_$svc" "http://127.0.0.1:$P$path" "$TPID" $(pgrep -P "$TPID")
      stop "$TPID"
    done
  done
done
stats cost "$ROWS"
