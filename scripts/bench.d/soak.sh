# soak (issue 28, section 4): sentiment_analyzer at 50% of its measured
# rate for SOAK_SECONDS (default 3600) under a schedule of kills, scaling,
# scrapes and hostile connections; scripts/bench.d/soak.py does the work and
# prints the report. Not in the default set: it takes an hour
# (SECTIONS=soak scripts/bench; SOAK_SECONDS=60 for a short one).
OHA_VERSION=1.16.0
OHA=$TARGET/tools/bin/oha
if [ "$("$OHA" --version 2>/dev/null | awk '{print $2}')" != "$OHA_VERSION" ]; then
  echo "bench: installing oha $OHA_VERSION into $TARGET/tools"
  cargo install -q --locked --root "$TARGET/tools" "oha@$OHA_VERSION"
fi
SOAK_SECONDS=${SOAK_SECONDS:-3600}
WINDOW=$(( SOAK_SECONDS >= 1200 ? 300 : SOAK_SECONDS / 4 ))
echo "== soak: ${SOAK_SECONDS} s under chaos, windows of ${WINDOW} s"
python3 "$BENCH_D/soak.py" --bin "$BIN" --oha "$OHA" --seconds "$SOAK_SECONDS" --window "$WINDOW" || echo "soak: FAILED (see above)"
