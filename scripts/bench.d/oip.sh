# oip (issue 26): the Open Inference Protocol's inference route against
# tiffin's own /predict, for the same model (models/digits/digits.onnx) and
# the same [1, 64] row, in the same interleaved rounds: over HTTP the
# protocol's JSON and its binary tensor data (bodies as tritonclient writes
# them; wrk), over gRPC BentoService/Call with an NDArray against ModelInfer
# with raw_input_contents (api-server/examples/grpc_bench.rs). Each round
# alternates the order of its targets.
# The protocol's bodies are tritonclient's own (tests/fixtures/oip/bodies.py,
# the first held-out image, in the venv scripts/setup/26-oip makes; it does
# nothing when the venv is there), and /predict gets the same row.
ROW=$WORK/digit.json
OIP_JSON=$WORK/oip.json
OIP_BIN=$WORK/oip.bin
scripts/setup/26-oip
written=$(target/pyvenv-oip/bin/python tests/fixtures/oip/bodies.py \
  --images models/digits/test --out "$WORK/oip-bodies")
cp "$WORK/oip-bodies/json.body" "$OIP_JSON"
cp "$WORK/oip-bodies/binary.body" "$OIP_BIN"
python3 -c 'import json,sys; print(json.loads(sys.argv[1])["binary"]["header_length"], end="")' "$written" > "$OIP_BIN.len"
bodies predict-from-oip "$ROW" "$OIP_JSON"
PIXELS=$(tr -d '[] \n' < "$ROW")
GRPC_CLIENT=$TARGET/release/examples/grpc_bench
[ -x "$GRPC_CLIENT" ] || cargo build --release -p tiffin-api-server --example grpc_bench -q
ROWS=$WORK/rows.oip
: > "$ROWS"
oip_http() { # $1 = target, $2 = port
  case $1 in
    predict_json) lua_file "$ROW" application/json; run_wrk "$1" "http://127.0.0.1:$2/predict" ;;
    oip_json) lua_file "$OIP_JSON" application/json; run_wrk "$1" "http://127.0.0.1:$2/v2/models/digits/infer" ;;
    oip_binary)
      lua_file "$OIP_BIN" application/octet-stream
      echo "wrk.headers[\"Inference-Header-Content-Length\"] = \"$(cat "$OIP_BIN.len")\"" >> "$WORK/post.lua"
      run_wrk "$1" "http://127.0.0.1:$2/v2/models/digits/infer" ;;
  esac
}
oip_grpc() { # $1 = target, $2 = address
  case $1 in
    grpc_ndarray) "$GRPC_CLIENT" "$2" ndarray:predict "$PIXELS" "$DUR" "$CONN" 4 "$1" ;;
    grpc_oip) "$GRPC_CLIENT" "$2" oip:digits "$PIXELS" "$DUR" "$CONN" 4 "$1" ;;
  esac
}
echo "== serve-http/serve-grpc --model models/digits/digits.onnx, one [1, 64] row at $CONN connections: /predict vs the Open Inference Protocol"
for round in $(seq 1 "$ROUNDS"); do
  http=(predict_json oip_json oip_binary); grpc=(grpc_ndarray grpc_oip)
  if [ $((round % 2)) = 0 ]; then http=(oip_binary oip_json predict_json); grpc=(grpc_oip grpc_ndarray); fi
  serve P "$BIN" serve-http --model models/digits/digits.onnx
  for t in "${http[@]}"; do r=$(oip_http "$t" "$P"); echo "  round $round: $r"; echo "$r" >> "$ROWS"; done
  stop "$TPID"
  GPORT=$(free_port)
  "$BIN" serve-grpc --model models/digits/digits.onnx --host 127.0.0.1 --port "$GPORT" --metrics-port "$(free_port)" 2>"$WORK/log.oip-grpc" &
  TPID=$!; PIDS+=("$TPID")
  for _ in $(seq 1 400); do
    out=$("$GRPC_CLIENT" "127.0.0.1:$GPORT" oip:digits "$PIXELS" 0.05 1 1 probe 2>/dev/null) && [ "$(field 4 "$out")" = 0 ] && [ "$(field 1 "$out")" != 0 ] && break
    sleep 0.05
  done
  for t in "${grpc[@]}"; do r=$(oip_grpc "$t" "127.0.0.1:$GPORT"); echo "  round $round: $r"; echo "$r" >> "$ROWS"; done
  stop "$TPID"
done
stats oip "$ROWS"
