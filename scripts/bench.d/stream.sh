# stream (issue 25): token streams of the built-in text_generator (POST
# /generate, Server-Sent Events; builtins/src/generate.rs) against the same
# model streamed by bare hyper (bin/bare_stream.rs: no runner hop, no IPC,
# no credit window; the limit), in the same interleaved rounds. The client
# is bin/stream_client.rs (raw HTTP/1.1, its own chunked decoder):
#   one    items/s through one stream of STREAM_LONG tokens at pace 0, streams
#          repeated back to back on one keep-alive connection for DUR s;
#   s64    items/s through 64 concurrent streams of STREAM_TOKENS tokens at
#          pace 0, each connection repeating its stream for DUR s;
#   ttfi   time from sending a request to its first token, p50 and p99, with
#          STREAM_RATE new streams a second (each on a new connection, an
#          open loop) of 20 tokens at pace 0 (a pace would put the two servers'
#          timers in the figure: bare waits on tokio's, tiffin's model on
#          thread::sleep), for DUR s.
# Goals: s64 >= 70% of bare's items/s; ttfi p99 <= 2x bare's. tiffin runs
# twice a round: in hop mode (a runner worker process, the default; row
# `tiffin`) and with the runner embedded in the API servers
# (runners.embedded=true; row `embedded`). With TIFFIN_BASELINE, the
# baseline build's hop mode is a third row (`baseline`).
SC=$TARGET/release/examples/stream_client
BARE_STREAM=$TARGET/release/examples/bare_stream
{ [ -x "$SC" ] && [ -x "$BARE_STREAM" ]; } || cargo build --release --example bare_stream --example stream_client -q
STREAM_LONG=${STREAM_LONG:-50000}
STREAM_TOKENS=${STREAM_TOKENS:-2000}
STREAM_RATE=${STREAM_RATE:-100}
ROWS=$WORK/rows.stream
: > "$ROWS"

# stream_run TARGET ADDR: the three measurements, one row each.
stream_run() {
  local r
  r=$("$SC" throughput "$2" 1 "$STREAM_LONG" "$DUR"); echo "  round $round: $1 one $r"; echo "$1 one $r" >> "$ROWS"
  r=$("$SC" throughput "$2" 64 "$STREAM_TOKENS" "$DUR"); echo "  round $round: $1 s64 $r"; echo "$1 s64 $r" >> "$ROWS"
  r=$("$SC" ttfi "$2" "$STREAM_RATE" 20 0 "$DUR"); echo "  round $round: $1 ttfi $r"; echo "$1 ttfi $r" >> "$ROWS"
}

echo "== stream: text_generator (POST /generate, SSE) against bare_stream, $DUR s each, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  start_ref "$BARE_STREAM"
  stream_run bare "127.0.0.1:$REF_PORT"
  stop "$REF_PID"
  for build in $(builds "$round"); do
    name=${build%%:*}; [ "$name" = this ] && name=tiffin
    serve P "${build#*:}" serve-http text_generator
    stream_run "$name" "127.0.0.1:$P"
    if [ "$round" = 1 ]; then echo "-- processes of text_generator ($name) after the streams:"; probe rss "$TPID"; fi
    stop "$TPID"
  done
  TIFFIN_CONFIG_OPTIONS=runners.embedded=true serve P "$BIN" serve-http text_generator
  stream_run embedded "127.0.0.1:$P"
  stop "$TPID"
done
echo
python3 "$BENCH_D/stream_stats.py" "$ROWS"
