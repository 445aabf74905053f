# python (issue 24): BentoML's metrics-guide sentiment service in Python,
# examples/python/service.py, served by BentoML 1.2.20 (`bentoml serve-http`,
# production mode, its defaults otherwise) and by tiffin (`tiffin serve-http
# examples/python/service.py:svc` from the wheel's venv), and tiffin's Rust
# `sentiment_analyzer` served by that same tiffin binary, under the same wrk
# load and review text, in $ROUNDS interleaved rounds (the order flips every
# round). Each server gets PY_WORKERS API servers and PY_WORKERS runner
# workers (default: the CPU count, BentoML's default for both; BentoML
# allows more runner workers only through workers_per_resource). Per target:
# req/s, p50/p99, RSS summed over every process of the server (sampled
# halfway through the run; PSS too), CPU time per request of all of them, and
# the mean inference_duration (the scoring alone).
# PY_TIFFIN=path (default $TARGET/pyvenv-python/bin/tiffin: without
# BENCH_SKIP_BUILD, scripts/setup/25-python and `scripts/wheel --release
# --install` put the optimised wheel there first) and PY_BENTOML_VENV=path
# (default $TARGET/pyvenv-frontdoor, made by scripts/setup/20-frontdoor)
# pick the two; the output says whether PY_TIFFIN is the release or the dev build.
# wrk's timeout is 30 s here (2 s by default): a request BentoML answers
# after 2 s would otherwise drop out of its latency figures.
if [ -z "${PY_TIFFIN:-}" ] && [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  # Both make and use target/pyvenv-python whatever CARGO_TARGET_DIR says.
  scripts/setup/25-python
  scripts/wheel --release --install target/pyvenv-python
  PY_TIFFIN=target/pyvenv-python/bin/tiffin
fi
PY_TIFFIN=${PY_TIFFIN:-$TARGET/pyvenv-python/bin/tiffin}
PY_BENTOML_VENV=${PY_BENTOML_VENV:-$TARGET/pyvenv-frontdoor}
PY_WORKERS=${PY_WORKERS:-$(nproc)}
PY_SERVICE=examples/python/service.py
PY_REVIEW="The battery lasts all day and the screen is gorgeous. Shipping was slow, but support was helpful!"
pystats() { python3 "$BENCH_D/python_stats.py" "$@"; }

echo "== python: $PY_SERVICE under BentoML 1.2.20 and tiffin, and tiffin's Rust sentiment_analyzer;" \
  "$PY_WORKERS API servers and $PY_WORKERS runner workers each, $ROUNDS interleaved rounds"
# BentoML runs ceil(resources.cpu) x workers_per_resource (an integer) runner
# workers of a runnable without CPU multi-threading, and refuses more CPUs
# than the machine has.
if [ "$PY_WORKERS" -le "$(nproc)" ]; then
  PY_BENTOML_CONFIG="runners.resources.cpu=$PY_WORKERS runners.workers_per_resource=1"
else
  PY_BENTOML_CONFIG="runners.resources.cpu=$(nproc) runners.workers_per_resource=$(( (PY_WORKERS + $(nproc) - 1) / $(nproc) ))"
fi
PY_BENTOML_CONFIG="api_server.workers=$PY_WORKERS $PY_BENTOML_CONFIG"
PY_TARGETS=()
if "$PY_BENTOML_VENV/bin/python" -c 'import bentoml; assert bentoml.__version__ == "1.2.20"' 2>/dev/null; then
  if ! "$PY_BENTOML_VENV/bin/python" -c 'import vaderSentiment' 2>/dev/null; then
    echo "bench: installing vadersentiment (examples/python/requirements.txt) into $PY_BENTOML_VENV"
    "$PY_BENTOML_VENV/bin/pip" install -q -r examples/python/requirements.txt
  fi
  PY_TARGETS+=(bentoml_python)
else
  echo "bench: no BentoML 1.2.20 in $PY_BENTOML_VENV (scripts/setup/20-frontdoor makes it): BentoML not measured" >&2
fi
PY_RUST_BIN=$PY_TIFFIN
if [ -x "$PY_TIFFIN" ]; then
  PY_TARGETS+=(tiffin_python)
else
  echo "bench: no $PY_TIFFIN (scripts/setup/25-python makes it): tiffin's Python service not measured;" \
    "the Rust sentiment_analyzer runs on $BIN" >&2
  PY_RUST_BIN=$BIN
fi
[ -x "$PY_RUST_BIN" ] && PY_TARGETS+=(tiffin_rust)
PY_BUILD="a build of unknown profile"
cmp -s "$PY_RUST_BIN" "$TARGET/debug/tiffin" 2>/dev/null && PY_BUILD="the dev build (target/debug/tiffin)"
cmp -s "$PY_RUST_BIN" "$TARGET/release/tiffin" 2>/dev/null && PY_BUILD="the release build (target/release/tiffin)"
echo "   tiffin binary: $PY_BUILD"
echo "   tiffin: $PY_RUST_BIN; BentoML: $PY_BENTOML_VENV/bin/bentoml (BENTOML_CONFIG_OPTIONS=\"$PY_BENTOML_CONFIG\"); review text: \"$PY_REVIEW\""

# py_start TARGET: starts it on a free port; sets PY_PORT and PY_PID (the
# root of the server's process tree). BentoML's home and its logs stay in $WORK.
py_start() {
  PY_PORT=$(free_port)
  case $1 in
    bentoml_python)
      BENTOML_HOME=$WORK/bentoml-home BENTOML_DO_NOT_TRACK=True BENTOML_CONFIG_OPTIONS="$PY_BENTOML_CONFIG" \
        "$PY_BENTOML_VENV/bin/bentoml" serve-http service.py:svc --working-dir examples/python \
        --host 127.0.0.1 --port "$PY_PORT" >"$WORK/log.$1" 2>&1 & ;;
    tiffin_python)
      "$PY_TIFFIN" serve-http "$PY_SERVICE:svc" --api-workers "$PY_WORKERS" --runner-workers "$PY_WORKERS" \
        --host 127.0.0.1 --port "$PY_PORT" 2>"$WORK/log.tiffin_python" & ;;
    tiffin_rust)
      "$PY_RUST_BIN" serve-http sentiment_analyzer --api-workers "$PY_WORKERS" --runner-workers "$PY_WORKERS" \
        --host 127.0.0.1 --port "$PY_PORT" 2>"$WORK/log.tiffin_rust" & ;;
  esac
  PY_PID=$!; PIDS+=("$PY_PID")
}

# py_ready: /readyz answers 200 within 120 s (BentoML takes seconds to import
# itself in every worker); says why not otherwise.
py_ready() {
  for _ in $(seq 1 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PY_PORT/readyz")" = 200 ] && return 0
    kill -0 "$PY_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: $1 never became ready; the end of its log:" >&2; tail -20 "$WORK/log.$1" >&2
  return 1
}

# py_stop: SIGTERM to the root, then waits until every process of its tree
# is gone (SIGKILL after 15 s), so no straggler shares the CPUs with the next.
py_stop() {
  local tree
  tree=$(pystats tree "$PY_PID")
  kill -TERM "$PY_PID" 2>/dev/null || true
  wait "$PY_PID" 2>/dev/null || true
  for _ in $(seq 1 150); do
    # shellcheck disable=SC2086
    kill -0 $tree 2>/dev/null || return 0
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -9 $tree 2>/dev/null || true
}

# py_measure TARGET: one measurement, recorded as "label rps p50_ms p99_ms
# non2xx rss_mb processes pss_mb cpu_us_per_req inference_us" in $PY_ROWS;
# inference_us is the mean of the guide's inference_duration histogram from
# the server's /metrics (the scoring alone, in the runner: what the model
# costs, apart from the server around it).
py_measure() {
  local url="http://127.0.0.1:$PY_PORT/analysis" pids before after out row cpu infer
  warm "$url"
  pids=$(pystats tree "$PY_PID")
  ( sleep "$(stats div "$DUR" 2)"; pystats rss-tree "$PY_PID" > "$WORK/py.rss" ) & local rss_job=$!
  # shellcheck disable=SC2086
  before=$(probe ticks $pids)
  out=$(wrk -t"$THREADS" -c"$CONN" -d"${DUR}s" --timeout 30s --latency -s "$WORK/post.lua" "$url")
  # shellcheck disable=SC2086
  after=$(probe ticks $pids)
  wait "$rss_job"
  row=$(stats wrk "$1" <<< "$out")
  cpu=$(stats cpu-per-req "$before" "$after" "$CLK_TCK" "$(field 1 "$row")" "$DUR")
  infer=$(curl -s "http://127.0.0.1:$PY_PORT/metrics" | pystats histogram-mean-us inference_duration)
  row="$row $(cat "$WORK/py.rss") $cpu $infer"
  echo "$row" >> "$PY_ROWS"
  echo "  round $round: $row"
  grep -h "Socket errors" <<< "$out" | sed "s/^/    $1: /" || true
}

PY_ROWS=$WORK/rows.python
: > "$PY_ROWS"
lua "$PY_REVIEW"
for t in "${PY_TARGETS[@]}"; do
  py_start "$t"
  if py_ready "$t"; then
    echo "-- $t answers \"$PY_REVIEW\" with $(curl -s -X POST -H 'Content-Type: text/plain' --data "$PY_REVIEW" "http://127.0.0.1:$PY_PORT/analysis")"
  fi
  py_stop
done
for round in $(seq 1 "$ROUNDS"); do
  order=("${PY_TARGETS[@]}")
  if [ $(( round % 2 )) = 0 ]; then
    order=(); for ((i = ${#PY_TARGETS[@]} - 1; i >= 0; i--)); do order+=("${PY_TARGETS[i]}"); done
  fi
  for t in "${order[@]}"; do
    py_start "$t"
    py_ready "$t" && py_measure "$t"
    py_stop
  done
done
echo
pystats table "$PY_ROWS" "$ROUNDS"
