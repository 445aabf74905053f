# ready: time from launch to /readyz 200 with 4 runner workers.
echo "== time from launch to /readyz 200 with 4 runner workers (5 runs)"
for i in 1 2 3 4 5; do
  P=$(free_port); start_tiffin "$P" "$BIN" serve-http sentiment_analyzer --runner-workers 4
  echo "  run $i: $(wait_ready "$P") ms"
  stop "$TPID"
done
