# vader (issue 28): the sentiment model alone, no server. ns per VADER call on
# the 12-word review: the vader_sentiment crate (0.1.1, sentiment_analyzer's
# scorer before) against tiffin_vader, interleaved in one process
# (scripts/bench.d/bin/vader_cost.rs, thread CPU time; VADER_ROUNDS, VADER_CALLS override).
echo "== vader: CPU per scoring call, vader_sentiment 0.1.1 vs tiffin_vader (release, one process, interleaved)"
"$TARGET/release/examples/vader_cost" "${VADER_ROUNDS:-15}" "${VADER_CALLS:-20000}"
