# autoscale: step load (idle -> $CONN connections for $DUR s -> idle) on
# embedding_service's /embed, with the embedder runner fixed at 1 worker,
# fixed at the CPU count, and autoscaled 1..CPU count (upscale_delay_s=1,
# downscale_delay_s=5, look_back_s=2); then the latency of the first call to a
# runner autoscaled to zero. Per-second throughput comes from step.lua's
# response() hook; worker-seconds integrate
# tiffin_supervisor_workers{role="runner"} sampled every 0.25 s from 2 s
# before the step to 8 s after it.
NCPU=$(nproc)
sample_workers() { # $1 = port, $2 = output file; until killed
  while :; do
    printf '%s %s\n' "$(date +%s.%N)" "$(runner_workers "$1" embedder)" >> "$2"
    sleep 0.25
  done
}
echo "== autoscaling: step load idle -> $CONN connections for ${DUR}s -> idle on embedding_service /embed ($NCPU CPUs; shared machine: figures are contaminated)"
printf "   %-22s %9s %12s %9s %9s %14s\n" mode "req/s" "to steady s" "p99 ms" errors "worker-seconds"
for mode in fixed-1 "fixed-$NCPU" "auto-1..$NCPU"; do
  case $mode in
    fixed-1) opts="runners.embedder.workers=1" ;;
    fixed-*) opts="runners.embedder.workers=$NCPU" ;;
    auto-*) opts="runners.embedder.workers=1 runners.embedder.autoscaling.enabled=true runners.embedder.autoscaling.min_workers=1 runners.embedder.autoscaling.max_workers=$NCPU runners.embedder.autoscaling.upscale_delay_s=1 runners.embedder.autoscaling.downscale_delay_s=5 runners.embedder.autoscaling.look_back_s=2" ;;
  esac
  TIFFIN_CONFIG_OPTIONS="$opts" serve P "$EMBED" serve-http
  : > "$WORK/workers"
  sample_workers "$P" "$WORK/workers" & SAMPLER=$!
  sleep 2
  T0=$(date +%s.%N)
  wrk -t"$THREADS" -c"$CONN" -d"${DUR}s" -s "$BENCH_D/step.lua" "http://127.0.0.1:$P/embed" > "$WORK/wrk.out"
  T1=$(date +%s.%N)
  sleep 8
  kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true
  stats autoscale "$mode" "$T0" "$T1" "$WORK/wrk.out" "$WORK/workers"
  stop "$TPID"
done
echo "   cold start: first call to embedder autoscaled to zero (min_workers=0, downscale_delay_s=1), 5 runs"
TIFFIN_CONFIG_OPTIONS="runners.embedder.autoscaling.enabled=true runners.embedder.autoscaling.min_workers=0 runners.embedder.autoscaling.max_workers=$NCPU runners.embedder.autoscaling.downscale_delay_s=1 runners.embedder.autoscaling.look_back_s=1" \
  serve P "$EMBED" serve-http
for i in 1 2 3 4 5; do
  for _ in $(seq 1 200); do
    n=$(runner_workers "$P" embedder)
    [ "$n" = 0 ] && break
    sleep 0.1
  done
  [ "$n" = 0 ] || { echo "   run $i: the runner never reached zero workers"; continue; }
  out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -H 'Content-Type: text/plain' -d 'cold start' "http://127.0.0.1:$P/embed")
  read -r code secs <<< "$out"
  echo "   run $i: HTTP $code in $(stats ms "$secs") ms"
done
stop "$TPID"
