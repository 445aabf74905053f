# lifecycle: a killed runner worker replaced, scale-up by 4, drain under load.
echo "== lifecycle: restart after kill -9, scale-up by 4, drain under load (sentiment_analyzer)"
serve P "$BIN" serve-http sentiment_analyzer
lua "I love this product!"
probe lifecycle "$BIN" "$TPID" "$P" "$WORK" "$CONN"
stop "$TPID"
