# memory: one API server (--api-workers 1) of iris_classifier, from
# /proc/<pid>/status: VmHWM is the peak resident set, VmRSS the resident set.
# Each case starts a fresh server, so its peak is its own. "after" is read
# 3 s after the last response (or after the connections closed).
# MEM_BIN=path measures another build of the binary (e.g. an older one).
MEM_BIN=${MEM_BIN:-$BIN}
ulimit -n "$(ulimit -Hn)"
echo "== memory of one API server (iris_classifier, --api-workers 1): 20 MiB /classify bodies, 5,000 idle keep-alive connections"
echo "   binary: $MEM_BIN"
bodies iris-rows "$WORK/rows.json"
printf "   %-34s %11s %11s %11s %11s   %s\n" case api_before api_peak api_after runner_peak note
for case in one six idle; do
  TIFFIN_CONFIG_OPTIONS="api_server.http.keepalive_timeout=120 api_server.http.max_connections=20000" \
    serve P "$MEM_BIN" serve-http iris_classifier --api-workers 1
  probe memory "$TPID" "$P" "$case" "$WORK/rows.json"
  stop "$TPID"
done
