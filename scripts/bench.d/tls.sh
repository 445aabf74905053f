# tls (issue 27): HTTPS against plain HTTP in the same interleaved rounds.
# Keep-alive throughput and p99 of the built-in sentiment_analyzer (POST
# /analysis) over HTTPS (serve-http --ssl-certfile/--ssl-keyfile) and over
# plain HTTP; new connections per second (wrk with `Connection: close`: every
# request is a TCP connect, and over TLS a full handshake); and the same two
# for bare_tls (bare hyper behind rustls, bin/bare_tls.rs) against bare_hyper,
# the limit of TLS on hyper. Goal: tiffin's keep-alive throughput over TLS
# >= 85% of plain. Certificates: tests/fixtures/tls/make_certs.sh (EC P-256
# server key, as most deployments use); wrk offers no ALPN, so every run is
# HTTP/1.1, with TLS 1.3 as OpenSSL's client prefers.
BARE_TLS=$TARGET/release/examples/bare_tls
[ -x "$BARE_TLS" ] || cargo build --release --example bare_tls -q
PKI=$WORK/pki
bash tests/fixtures/tls/make_certs.sh "$PKI"
CERT=$PKI/server.pem
KEY=$PKI/server.key
ROWS=$WORK/rows.tls
: > "$ROWS"

# wait_ready_tls PORT: /readyz answers 200 over HTTPS (the certificate is
# not checked: the bench measures, tests/it/tls/ verifies).
wait_ready_tls() {
  for _ in $(seq 1 2000); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$1/readyz")" = 200 ] && return 0
    sleep 0.005
  done
  echo "bench tls: tiffin never answered /readyz over HTTPS on port $1" >&2; return 1
}

# tls_pair LABEL URL: LABEL on keep-alive connections and LABEL_close with a
# new connection per request, each a row of $ROWS.
tls_pair() {
  local r
  r=$(run_wrk "$1" "$2"); echo "  round $round: $r"; echo "$r" >> "$ROWS"
  r=$(wrk -t"$THREADS" -c"$CONN" -d"${DUR}s" --latency -s "$WORK/post.lua" -H 'Connection: close' "$2" \
    | stats wrk "$1_close")
  echo "  round $round: $r"; echo "$r" >> "$ROWS"
}

tls_target() { # $1 = target
  case $1 in
    bare_plain)
      start_ref "$BARE"; lua "hello"; tls_pair bare_plain "http://127.0.0.1:$REF_PORT/echo"; stop "$REF_PID" ;;
    bare_tls)
      REF_PORT=$(free_port)
      "$BARE_TLS" "127.0.0.1:$REF_PORT" "$CERT" "$KEY" 2>/dev/null & REF_PID=$!; PIDS+=("$REF_PID")
      sleep 0.3
      lua "hello"; tls_pair bare_tls "https://127.0.0.1:$REF_PORT/echo"; stop "$REF_PID" ;;
    tiffin_plain)
      serve P "$BIN" serve-http sentiment_analyzer
      lua "I love this product!"; tls_pair tiffin_plain "http://127.0.0.1:$P/analysis"; stop "$TPID" ;;
    tiffin_tls)
      P=$(free_port)
      start_tiffin "$P" "$BIN" serve-http sentiment_analyzer --ssl-certfile "$CERT" --ssl-keyfile "$KEY"
      wait_ready_tls "$P"
      lua "I love this product!"; tls_pair tiffin_tls "https://127.0.0.1:$P/analysis"; stop "$TPID" ;;
  esac
}

echo "== TLS: sentiment_analyzer and bare hyper over HTTPS vs plain HTTP, keep-alive and a new connection per request"
for round in $(seq 1 "$ROUNDS"); do
  targets=(bare_plain bare_tls tiffin_plain tiffin_tls)
  [ $((round % 2)) = 0 ] && targets=(tiffin_tls tiffin_plain bare_tls bare_plain)
  for t in "${targets[@]}"; do tls_target "$t"; done
done
stats tls "$ROWS"
