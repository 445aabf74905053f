# batching: adaptive batching on vs off for iris_classifier and for the
# embedding_service example (where batching pays).
echo "== iris_classifier at $CONN connections: adaptive batching on vs off"
batching_on_off iris /classify application/json "[[5.1, 3.5, 1.4, 0.2]]" "$BIN" serve-http iris_classifier

echo
echo "== embedding_service example (dense 256-4096-256 network, 8 MB of weights) at $CONN connections: batching on vs off"
batching_on_off embedding /embed text/plain "I love this product, it batches beautifully" \
  "$EMBED" serve-http
