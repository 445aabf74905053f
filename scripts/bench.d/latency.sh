# latency (issue 16, item 4): latency under a fixed rate, not only at
# saturation. wrk is closed-loop (a slow answer delays the next request,
# hiding queueing), so this uses oha with a rate (-q) and
# --latency-correction, which measures each request from when it was due (no
# coordinated omission). oha is built from crates.io into $TARGET/tools once.
# Rates are 50% and 90% of echo's saturated rate, measured twice: with wrk,
# and with oha itself unthrottled (oha needs more CPU per request than wrk
# and shares the 2 cores with the server, so 90% of wrk's maximum can be past
# what echo serves under oha). Bare hyper and bare hop run at echo's rates,
# the fair comparison (same offered load).
OHA_VERSION=1.16.0
OHA=$TARGET/tools/bin/oha
if [ "$("$OHA" --version 2>/dev/null | awk '{print $2}')" != "$OHA_VERSION" ]; then
  echo "bench: installing oha $OHA_VERSION into $TARGET/tools"
  # Its default features (rustls): without them oha 1.16 does not compile.
  cargo install -q --locked --root "$TARGET/tools" "oha@$OHA_VERSION"
fi
echo "== latency at a fixed rate (oha, open loop, ${DUR} s, $CONN connections): echo vs bare hyper, $ROUNDS rounds"
oha_run() { # $1 = label, $2 = rate (max: unthrottled), $3 = url ; prints "label rate achieved p50 p99 p99.9 errors"
  local rate=(-q "$2" --latency-correction)
  [ "$2" = max ] && rate=()
  "$OHA" -z "${DUR}s" -c "$CONN" "${rate[@]}" --no-tui --output-format json \
    -m POST -T text/plain -d hello "$3" > "$WORK/oha.json" 2>/dev/null || true
  stats oha "$1" "$2" "$WORK/oha.json"
}
ROWS=$WORK/rows.latency
: > "$ROWS"
lat_record() { echo "$1" >> "$ROWS"; echo "  $1"; }
for round in $(seq 1 "$ROUNDS"); do
  start_ref "$BARE"; BP=$REF_PORT; BPID=$REF_PID
  start_ref "$HOP"; HP=$REF_PORT; HPID=$REF_PID
  serve P "$BIN" serve-http echo
  lua "hello"
  bmax=$(field 1 "$(run_wrk bare "http://127.0.0.1:$BP/echo")")
  tmax=$(field 1 "$(run_wrk echo "http://127.0.0.1:$P/echo")")
  omax=$(field 2 "$(oha_run omax max "http://127.0.0.1:$P/echo")")
  [[ "$omax" =~ ^[0-9]+$ ]] || omax=0
  echo "  round $round: saturated bare hyper $bmax req/s (wrk), echo $tmax req/s (wrk) and $omax req/s (oha)"
  for pct in 50 90; do
    trate=$((tmax * pct / 100)); brate=$((bmax * pct / 100)); orate=$((omax * pct / 100))
    lat_record "$(oha_run "echo@${pct}%" "$trate" "http://127.0.0.1:$P/echo")"
    lat_record "$(oha_run "bare@echo's${pct}%" "$trate" "http://127.0.0.1:$BP/echo")"
    lat_record "$(oha_run "hop@echo's${pct}%" "$trate" "http://127.0.0.1:$HP/echo")"
    lat_record "$(oha_run "bare@${pct}%" "$brate" "http://127.0.0.1:$BP/echo")"
    [ "$orate" -gt 0 ] || continue
    lat_record "$(oha_run "echo@${pct}%oha" "$orate" "http://127.0.0.1:$P/echo")"
    lat_record "$(oha_run "bare@echo's${pct}%oha" "$orate" "http://127.0.0.1:$BP/echo")"
    lat_record "$(oha_run "hop@echo's${pct}%oha" "$orate" "http://127.0.0.1:$HP/echo")"
  done
  stop "$TPID"; stop "$BPID"; stop "$HPID"
done
stats latency "$ROWS"
