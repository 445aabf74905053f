# large (issue 16, item 3): a 1 MB body echoed back, tiffin echo vs bare
# hyper and bare hop (and the baseline build's echo with TIFFIN_BASELINE).
echo "== 1 MB echo round trip at $CONN connections: $ROUNDS interleaved rounds"
head -c 1048576 /dev/zero | tr '\0' 'a' > "$WORK/1mb.txt"
lua_file "$WORK/1mb.txt" text/plain
ROWS=$WORK/rows.large
: > "$ROWS"
for round in $(seq 1 "$ROUNDS"); do
  start_ref "$BARE"
  r=$(run_wrk bare_1mb "http://127.0.0.1:$REF_PORT/echo"); echo "  round $round: $r"; echo "$r" >> "$ROWS"
  stop "$REF_PID"
  start_ref "$HOP"
  r=$(run_wrk hop_1mb "http://127.0.0.1:$REF_PORT/echo"); echo "  round $round: $r"; echo "$r" >> "$ROWS"
  stop "$REF_PID"
  for build in $(builds "$round"); do
    name=${build%%:*}; bin=${build#*:}
    label=tiffin_1mb; [ "$name" = baseline ] && label=baseline_1mb
    serve P "$bin" serve-http echo
    r=$(run_wrk "$label" "http://127.0.0.1:$P/echo"); echo "  round $round: $r"; echo "$r" >> "$ROWS"
    stop "$TPID"
  done
done
stats large "$ROWS" "$BASELINE"
