# metrics: sentiment_analyzer with metrics enabled vs disabled, interleaved.
echo "== sentiment_analyzer, metrics enabled vs disabled: $ROUNDS interleaved rounds"
ROWS=$WORK/rows.metrics
: > "$ROWS"
lua "I love this product!"
for round in $(seq 1 "$ROUNDS"); do
  for mode in on off; do
    opts=""; [ "$mode" = off ] && opts="api_server.metrics.enabled=false runners.metrics.enabled=false"
    TIFFIN_CONFIG_OPTIONS="$opts" serve P "$BIN" serve-http sentiment_analyzer
    r=$(run_wrk "metrics_$mode" "http://127.0.0.1:$P/analysis"); echo "  round $round: $r"
    echo "$r" >> "$ROWS"
    stop "$TPID"
  done
done
stats metrics "$ROWS"
