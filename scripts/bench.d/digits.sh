# digits (issue 12): a real image model. digits_classifier (built in:
# multipart PNG upload, decode, 8x8 pixels, ONNX MLP in tract) and the same
# model through `serve-http --model` (NumpyNdarray JSON of one [1, 64] row),
# each with batching on and off; then a 200 KB PNG upload; RSS of every
# process.
FORM=$WORK/digit.form
bodies digit-form "$FORM" models/digits/samples/digit-7.png
FORM_CT="multipart/form-data; boundary=------------------------tiffinbench"
ROW=$WORK/digit.json
bodies digit-row "$ROW"
echo "== digits_classifier, multipart PNG upload ($(wc -c < "$FORM") bytes) at $CONN connections: batching on vs off"
batching_on_off digits_upload /predict "$FORM_CT" "@$FORM" "$BIN" serve-http digits_classifier
echo
echo "== serve-http --model models/digits/digits.onnx, one [1, 64] row as JSON at $CONN connections: batching on vs off"
batching_on_off digits_model /predict application/json "@$ROW" "$BIN" serve-http --model models/digits/digits.onnx
echo
BIG=$WORK/big.png
bodies noise-png "$BIG"
echo "== digits_classifier, a $(wc -c < "$BIG")-byte PNG (256x256 RGB) as the raw body at $CONN connections"
lua_file "$BIG" image/png
ROWS=$WORK/rows.digits
: > "$ROWS"
for round in $(seq 1 "$ROUNDS"); do
  serve P "$BIN" serve-http digits_classifier
  r=$(run_wrk digits_200kb "http://127.0.0.1:$P/predict"); echo "  round $round: $r"; echo "$r" >> "$ROWS"
  if [ "$round" = 1 ]; then echo "-- processes of digits_classifier after the 200 KB uploads:"; probe rss "$TPID"; fi
  stop "$TPID"
done
stats upload "$ROWS" "$(wc -c < "$BIG")"
serve P "$BIN" serve-http --model models/digits/digits.onnx
lua_file "$ROW" application/json; run_wrk digits_model_rss "http://127.0.0.1:$P/predict" >/dev/null
echo "-- processes of serve-http --model digits.onnx after load:"; probe rss "$TPID"
stop "$TPID"
