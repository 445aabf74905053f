# oip (issue 26): the Open Inference Protocol's inference route against
# tiffin's own /predict, for the same model (models/digits/digits.onnx) and
# the same [1, 64] row, in the same interleaved rounds: over HTTP the
# protocol's JSON and its binary tensor data (bodies as tritonclient writes
# them; wrk), over gRPC BentoService/Call with an NDArray against ModelInfer
# with raw_input_contents (api-server/examples/grpc_bench.rs). Each round
# alternates the order of its targets.
# MLServer (mlserver-sklearn, the server a KServe user would otherwise pick for
# this scikit-learn model) serves the same classifier in the same rounds:
# models/digits_sklearn.py refits it and checks its weights are digits.onnx's,
# in a venv of pinned packages (scripts/bench.d/mlserver-requirements.txt),
# with MLServer's default settings but for its ports. Its JSON body asks for
# `predict_proba` (MLServer's name for the probabilities; it has no binary
# tensor extension), and gRPC ModelInfer gets the same raw row as tiffin's.
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
MLS_VENV=$(realpath "$TARGET")/pyvenv-mlserver
if ! "$MLS_VENV/bin/python" -c 'import mlserver, mlserver_sklearn, onnx' >/dev/null 2>&1; then
  python3 -m venv "$MLS_VENV"
  "$MLS_VENV/bin/python" -m pip install -q -r "$BENCH_D/mlserver-requirements.txt"
fi
MLS_DIR=$WORK/mlserver
mkdir -p "$MLS_DIR/digits"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0 \
  "$MLS_VENV/bin/python" models/digits_sklearn.py "$MLS_DIR/digits/model.joblib"
echo '{"name": "digits", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib", "version": "v1"}}' \
  > "$MLS_DIR/digits/model-settings.json"
MLS_JSON=$WORK/mlserver.json
echo "{\"inputs\": [{\"name\": \"pixels\", \"shape\": [1, 64], \"datatype\": \"FP32\", \"data\": [$(tr -d '[] \n' < "$ROW")]}], \"outputs\": [{\"name\": \"predict_proba\"}]}" > "$MLS_JSON"
# mlserver_start: MLServer on free ports, ready; sets MLS_HTTP, MLS_GRPC and MLS_PID.
mlserver_start() {
  MLS_HTTP=$(free_port); MLS_GRPC=$(free_port)
  echo "{\"http_port\": $MLS_HTTP, \"grpc_port\": $MLS_GRPC, \"metrics_port\": $(free_port)}" > "$MLS_DIR/settings.json"
  (cd "$MLS_DIR" && exec "$MLS_VENV/bin/mlserver" start . >"$WORK/log.mlserver" 2>&1) &
  MLS_PID=$!; PIDS+=("$MLS_PID")
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MLS_HTTP/v2/models/digits/ready")" = 200 ] && return 0
    sleep 0.1
  done
  echo "oip: MLServer was not ready within 60 s (see $WORK/log.mlserver)" >&2; return 1
}
mlserver_stop() { pkill -TERM -P "$MLS_PID" 2>/dev/null || true; stop "$MLS_PID"; }
ROWS=$WORK/rows.oip
: > "$ROWS"
oip_http() { # $1 = target, $2 = port
  case $1 in
    predict_json) lua_file "$ROW" application/json; run_wrk "$1" "http://127.0.0.1:$2/predict" ;;
    oip_json) lua_file "$OIP_JSON" application/json; run_wrk "$1" "http://127.0.0.1:$2/v2/models/digits/infer" ;;
    mlserver_json) lua_file "$MLS_JSON" application/json; run_wrk "$1" "http://127.0.0.1:$2/v2/models/digits/infer" ;;
    oip_binary)
      lua_file "$OIP_BIN" application/octet-stream
      echo "wrk.headers[\"Inference-Header-Content-Length\"] = \"$(cat "$OIP_BIN.len")\"" >> "$WORK/post.lua"
      run_wrk "$1" "http://127.0.0.1:$2/v2/models/digits/infer" ;;
  esac
}
oip_grpc() { # $1 = target, $2 = address
  case $1 in
    grpc_ndarray) "$GRPC_CLIENT" "$2" ndarray:predict "$PIXELS" "$DUR" "$CONN" 4 "$1" ;;
    grpc_oip | mlserver_grpc) "$GRPC_CLIENT" "$2" oip:digits "$PIXELS" "$DUR" "$CONN" 4 "$1" ;;
  esac
}
echo "== serve-http/serve-grpc --model models/digits/digits.onnx, one [1, 64] row at $CONN connections: /predict vs the Open Inference Protocol"
record() { echo "  round $round: $1"; echo "$1" >> "$ROWS"; }
tiffin_round() {
  local http=(predict_json oip_json oip_binary) grpc=(grpc_ndarray grpc_oip) t
  if [ $((round % 2)) = 0 ]; then http=(oip_binary oip_json predict_json); grpc=(grpc_oip grpc_ndarray); fi
  serve P "$BIN" serve-http --model models/digits/digits.onnx
  for t in "${http[@]}"; do record "$(oip_http "$t" "$P")"; done
  stop "$TPID"
  GPORT=$(free_port)
  "$BIN" serve-grpc --model models/digits/digits.onnx --host 127.0.0.1 --port "$GPORT" --metrics-port "$(free_port)" 2>"$WORK/log.oip-grpc" &
  TPID=$!; PIDS+=("$TPID")
  for _ in $(seq 1 400); do
    out=$("$GRPC_CLIENT" "127.0.0.1:$GPORT" oip:digits "$PIXELS" 0.05 1 1 probe 2>/dev/null) && [ "$(field 4 "$out")" = 0 ] && [ "$(field 1 "$out")" != 0 ] && break
    sleep 0.05
  done
  for t in "${grpc[@]}"; do record "$(oip_grpc "$t" "127.0.0.1:$GPORT")"; done
  stop "$TPID"
}
mlserver_round() {
  mlserver_start
  record "$(oip_http mlserver_json "$MLS_HTTP")"
  record "$(oip_grpc mlserver_grpc "127.0.0.1:$MLS_GRPC")"
  mlserver_stop
}
for round in $(seq 1 "$ROUNDS"); do
  # Odd rounds serve tiffin first, even rounds MLServer first.
  if [ $((round % 2)) = 1 ]; then tiffin_round; mlserver_round; else mlserver_round; tiffin_round; fi
done
stats oip "$ROWS"
