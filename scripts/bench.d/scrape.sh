# scrape: latency of the aggregated /metrics with 8 runner workers of
# custom_service each holding 2,000 custom series.
echo "== aggregated scrape: 8 runner workers x 2000 custom series (custom_service), 100 scrapes"
P=$(free_port)
CUSTOM_SERIES=2000 TIFFIN_CONFIG_OPTIONS="runners.calc.workers=8" start_tiffin "$P" "$CUSTOM" serve-http
for _ in $(seq 1 400); do curl -s -o /dev/null "http://127.0.0.1:$P/metrics" && break; sleep 0.05; done
sleep 2
probe scrape "$P"
stop "$TPID"
