# grpc: scripts/bench-grpc, with the same duration and concurrency.
"$BENCH_D/../bench-grpc" "$DUR" "$CONN"
