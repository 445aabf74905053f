# embedded (issue 28): the figures of its table in one interleaved run.
# Every round: bare hyper and bare hop (the references), echo and
# sentiment_analyzer on the 12-word review in hop mode (runner workers, the
# default) and with every runner embedded in the API servers
# (runners.embedded=true), and `serve-http --model digits.onnx` on one
# [1, 64] row (hop mode). Ratios of the medians against the goals. One more
# row says what BentoML's per-request bookkeeping costs against bare hyper,
# which does none: embedded echo with the access log off
# (api_server.logging.access.enabled=false; metrics and request ids stay).
# The decomposition rows say where the rest goes: `echo_embedded_lean`
# with the access log and the API server's metrics off, `livez_lean` (the
# front door alone: GET /livez, same options) against bare hyper's GET
# (`bare_get`), and the budget: bare hyper spinning 2 and 4 us of CPU a
# request (`bare_spin2000`, `bare_spin4000`; BARE_SPIN_NS), i.e. how much
# work a server may add to bare hyper's and keep a given share of its rate.
ROWS=$WORK/rows.embedded
: > "$ROWS"
REVIEW="I love this product, it works great! The battery could be better."
ROW=$WORK/digit.json
bodies digit-row "$ROW"
SPLITS=()
for round in $(seq 1 "$ROUNDS"); do
  start_ref "$BARE"; lua "hello"; run_wrk bare_hyper "http://127.0.0.1:$REF_PORT/echo" >> "$ROWS"; stop "$REF_PID"
  start_ref "$HOP"; lua "hello"; run_wrk bare_hop "http://127.0.0.1:$REF_PORT/echo" >> "$ROWS"; stop "$REF_PID"
  for spin in 2000 4000; do
    BARE_SPIN_NS=$spin start_ref "$BARE"; lua "hello"; run_wrk "bare_spin$spin" "http://127.0.0.1:$REF_PORT/echo" >> "$ROWS"; stop "$REF_PID"
  done
  start_ref "$BARE"; lua_get; run_wrk bare_get "http://127.0.0.1:$REF_PORT/livez" >> "$ROWS"; stop "$REF_PID"
  for mode in hop embedded; do
    options=""; [ "$mode" = embedded ] && options="runners.embedded=true"
    TIFFIN_CONFIG_OPTIONS=$options serve P "$BIN" serve-http echo
    lua "hello"
    ( sleep "$(stats div "$DUR" 2)"; probe split "$TPID" "$P" > "$WORK/split" ) & SPLIT_PID=$!
    run_wrk "echo_$mode" "http://127.0.0.1:$P/echo" >> "$ROWS"
    wait "$SPLIT_PID"
    SPLITS+=("$mode:$(cat "$WORK/split")")
    stop "$TPID"
    TIFFIN_CONFIG_OPTIONS=$options serve P "$BIN" serve-http sentiment_analyzer
    lua "$REVIEW"; run_wrk "sentiment_$mode" "http://127.0.0.1:$P/analysis" >> "$ROWS"
    if [ "$round" = 1 ]; then echo "-- processes of sentiment_analyzer ($mode):"; probe rss "$TPID"; fi
    stop "$TPID"
  done
  TIFFIN_CONFIG_OPTIONS="runners.embedded=true api_server.logging.access.enabled=false" serve P "$BIN" serve-http echo
  lua "hello"; run_wrk echo_embedded_nolog "http://127.0.0.1:$P/echo" >> "$ROWS"
  stop "$TPID"
  TIFFIN_CONFIG_OPTIONS="runners.embedded=true api_server.logging.access.enabled=false api_server.metrics.enabled=false" serve P "$BIN" serve-http echo
  lua "hello"; run_wrk echo_embedded_lean "http://127.0.0.1:$P/echo" >> "$ROWS"
  lua_get; run_wrk livez_lean "http://127.0.0.1:$P/livez" >> "$ROWS"
  stop "$TPID"
  serve P "$BIN" serve-http --model models/digits/digits.onnx
  lua_file "$ROW" application/json; run_wrk digits_row "http://127.0.0.1:$P/predict" >> "$ROWS"
  stop "$TPID"
done
echo
stats embedded "$ROWS"
echo "connections per API server mid-run of echo, and max/min, each round: ${SPLITS[*]}"
