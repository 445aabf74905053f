# observability (issue 13): what the access log and tracing cost. Each mode
# starts a fresh `serve-http echo`; tracing exports over OTLP/HTTP to a sink
# on this machine that answers every export with 200 (a collector's cost is
# not ours).
echo "== access log and tracing cost on echo: $ROUNDS interleaved rounds (req/s, CPU us per request)"
SINK_PORT=$(free_port)
# python3 itself in the background (not through probe(), whose subshell
# would be the pid that stop and the exit trap signal).
python3 "$BENCH_D/probe.py" otlp-sink "$SINK_PORT" &
SINK_PID=$!; PIDS+=("$SINK_PID"); sleep 0.3
TRACE="tracing.exporter_type=otlp tracing.otlp.endpoint=http://127.0.0.1:$SINK_PORT/v1/traces"
declare -A OBS_OPTS=(
  [log_off]="api_server.logging.access.enabled=false"
  [log_on]=""
  [trace_1.0]="$TRACE tracing.sample_rate=1.0"
  [trace_0.01]="$TRACE tracing.sample_rate=0.01"
)
OBS_MODES=(log_off log_on trace_1.0 trace_0.01)
ROWS=$WORK/rows.observability
: > "$ROWS"
lua "hello"
for round in $(seq 1 "$ROUNDS"); do
  for mode in "${OBS_MODES[@]}"; do
    TIFFIN_CONFIG_OPTIONS="${OBS_OPTS[$mode]}" serve P "$BIN" serve-http echo
    warm "http://127.0.0.1:$P/echo"
    mapfile -t procs < <(echo "$TPID"; pgrep -P "$TPID")
    before=$(probe ticks "${procs[@]}")
    r=$(run_wrk "$mode" "http://127.0.0.1:$P/echo")
    after=$(probe ticks "${procs[@]}")
    cpu=$(stats cpu-per-req "$before" "$after" "$CLK_TCK" "$(field 1 "$r")" "$DUR")
    echo "  round $round: $r  cpu_us/req $cpu"
    echo "$r $cpu" >> "$ROWS"
    stop "$TPID"
  done
done
stats observability "$ROWS" "${OBS_MODES[@]}"
stop "$SINK_PID"
