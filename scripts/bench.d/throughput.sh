# throughput: bare hyper, bare hop, tiffin echo and sentiment_analyzer (and,
# with TIFFIN_BASELINE, the baseline build's echo and sentiment_analyzer) in
# $ROUNDS interleaved rounds; medians, ratios, the connection split over the
# API servers and the RSS of every process.
ROWS=$WORK/rows.throughput
: > "$ROWS"
SPLITS=()
for round in $(seq 1 "$ROUNDS"); do
  start_ref "$BARE"; lua "hello"; run_wrk bare_hyper "http://127.0.0.1:$REF_PORT/echo" >> "$ROWS"
  stop "$REF_PID"

  # The least a server with one process hop costs (scripts/bench.d/bin/bare_hop.rs).
  start_ref "$HOP"; lua "hello"; run_wrk bare_hop "http://127.0.0.1:$REF_PORT/echo" >> "$ROWS"
  stop "$REF_PID"

  for build in $(builds "$round"); do
    name=${build%%:*}; bin=${build#*:}
    label=tiffin; [ "$name" = baseline ] && label=baseline
    serve P "$bin" serve-http echo
    lua "hello"
    # The connection split over the API servers, sampled halfway through the run.
    ( sleep "$(stats div "$DUR" 2)"; probe split "$TPID" "$P" > "$WORK/split" ) & SPLIT_PID=$!
    run_wrk "${label}_echo" "http://127.0.0.1:$P/echo" >> "$ROWS"
    wait "$SPLIT_PID"
    [ "$name" = this ] && SPLITS+=("$(cat "$WORK/split")")
    if [ "$round" = 1 ] && [ "$name" = this ]; then echo "-- processes of tiffin echo under load just finished:"; probe rss "$TPID"; fi
    stop "$TPID"
  done

  for build in $(builds "$round"); do
    name=${build%%:*}; bin=${build#*:}
    label=tiffin; [ "$name" = baseline ] && label=baseline
    serve P "$bin" serve-http sentiment_analyzer
    lua "I love this product!"; run_wrk "${label}_sentiment" "http://127.0.0.1:$P/analysis" >> "$ROWS"
    if [ "$round" = 1 ] && [ "$name" = this ]; then echo "-- processes of tiffin sentiment_analyzer:"; probe rss "$TPID"; fi
    stop "$TPID"
  done
done

echo
stats throughput "$ROWS" "$ROUNDS" "$BASELINE"
echo "tiffin echo: connections per API server mid-run, and max/min, each round: ${SPLITS[*]}"
