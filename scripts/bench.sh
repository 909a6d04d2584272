#!/usr/bin/env bash
# make bench: the gateway measured side by side with the database's own ceiling, in one run.
#
# Starts `coalition dev --ephemeral` (its PostgreSQL has durable commits: fsync, synchronous_commit
# and full_page_writes on, SERIALIZABLE by default), runs `pgbench -N` (update a balance, insert a
# history row: the database's own ceiling for one ledger write) against that same server, then
# `coalition bench` against the gateway at the same client counts, and prints one table with
# both and their ratio. Writes the section "Gateway vs pgbench" of docs/BENCHMARKS.md (other
# sections of that file are kept).
#
# Settings (environment): BIN (bin/coalition), BENCH_DURATION seconds per measurement (15),
# BENCH_WARMUP (3s), BENCH_CLIENTS ("1 32"), BENCH_SCALE pgbench scale (10), BENCH_DOC
# (docs/BENCHMARKS.md; empty: do not write).
set -euo pipefail

BIN=${BIN:-bin/coalition}
DURATION=${BENCH_DURATION:-15}
WARMUP=${BENCH_WARMUP:-3s}
CLIENTS=${BENCH_CLIENTS:-"1 32"}
SCALE=${BENCH_SCALE:-10}
DOC=${BENCH_DOC-docs/BENCHMARKS.md}
MAXC=$(echo $CLIENTS | tr ' ' '\n' | sort -n | tail -1)

for tool in pgbench psql; do
	command -v $tool >/dev/null || { echo "bench: $tool not found (apt-get install postgresql-client)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "bench: $BIN not built (make build)" >&2; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"
dev=
cleanup() {
	if [[ -n $dev ]] && kill -0 "$dev" 2>/dev/null; then
		kill -TERM "$dev" && wait "$dev" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "bench: starting coalition dev --ephemeral ..."
"$BIN" dev --ephemeral --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --log-format text >"$work/dev.out" 2>"$work/dev.log" &
dev=$!
for _ in $(seq 180); do
	grep -q '^  certificates ' "$work/dev.out" && break
	kill -0 "$dev" 2>/dev/null || { echo "bench: coalition dev exited:" >&2; cat "$work/dev.log" >&2; exit 1; }
	sleep 0.5
done
url=$(grep -oP 'database \S+ ready \(\K[^)]+' "$work/dev.out")
addr=$(grep -oP 'gRPC \(mTLS\)\s+\K\S+' "$work/dev.out")
certs=$(grep -oP '^  certificates\s+\K\S+' "$work/dev.out")
[[ -n $url && -n $addr && -n $certs ]] || { echo "bench: coalition dev did not print its addresses:" >&2; cat "$work/dev.out" >&2; exit 1; }
pgurl=${url/\/coalition\?/\/pgbench?}
psql "${url/\/coalition\?/\/postgres?}" -qc 'CREATE DATABASE pgbench'
pgversion=$(psql "$pgurl" -tAc 'SHOW server_version')
settings=$(psql "$pgurl" -tAc "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'default_transaction_isolation', 'wal_sync_method')")
echo "bench: PostgreSQL $pgversion ($settings); gateway $addr"
echo "bench: pgbench -i -s $SCALE ..."
pgbench -i -s "$SCALE" -q "$pgurl" >"$work/pgbench-init.out" 2>&1

# settle: a CHECKPOINT before each measurement, so none starts with the dirty buffers and the
# WAL of the one before it (pgbench -i alone writes about 1M rows): without it, a checkpoint
# ran during the later gateway workloads, and their throughput fell from one 5-second interval
# to the next.
settle() { psql "$url" -qc 'CHECKPOINT'; }
# checkpoints: checkpoints the server has started (timed and requested), ours included.
checkpoints() { psql "$url" -tAc 'SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter'; }

# quantile FILE Q: the Q quantile of the sorted numbers in FILE (nearest rank).
quantile() { awk -v q="$2" '{v[NR]=$1} END {if (NR == 0) {print "nan"; exit} r=int(q*NR); if (r < q*NR) r++; if (r < 1) r=1; print v[r]}' "$1"; }

CKS=""
declare -A PG_TPS PG_P50 PG_P99
for c in $CLIENTS; do
	j=$((c < 2 ? c : 2))
	echo "bench: pgbench -N -M prepared -c $c -j $j -T $DURATION ..."
	settle
	ck=$(checkpoints)
	(cd "$work" && pgbench -N -M prepared -c "$c" -j "$j" -T "$DURATION" --max-tries=20 -l --log-prefix="pgb$c" "$pgurl" >"pgbench-$c.out" 2>&1)
	PG_TPS[$c]=$(grep -oP '^tps = \K[0-9.]+' "$work/pgbench-$c.out" | head -1)
	# Per-transaction log: client txn latency_us script epoch epoch_us [...]; failed ones say "failed".
	cat "$work"/pgb"$c".* | awk '$3 ~ /^[0-9]+$/ {print $3/1000}' | sort -n >"$work/lat-$c"
	PG_P50[$c]=$(quantile "$work/lat-$c" 0.50)
	PG_P99[$c]=$(quantile "$work/lat-$c" 0.99)
	grep -E '^(number of (transactions actually processed|failed|transactions retried)|latency average)' "$work/pgbench-$c.out" | sed 's/^/    /'
	n=$(($(checkpoints) - ck))
	CKS+="${CKS:+, }pgbench $c: $n"
	printf '    tps %s  p50 %.3f ms  p99 %.3f ms  (checkpoints during it: %d)\n' "${PG_TPS[$c]}" "${PG_P50[$c]}" "${PG_P99[$c]}" "$n"
done

declare -A GW
runs=()
for c in $CLIENTS; do runs+=("award:$c"); done
runs+=("spread:$MAXC" "hot-partner:$MAXC" "replay:$MAXC")
for r in "${runs[@]}"; do
	wl=${r%%:*} c=${r##*:}
	echo "bench: coalition bench --workload $wl --concurrency $c --duration ${DURATION}s --warmup $WARMUP ..."
	settle
	ck=$(checkpoints)
	"$BIN" bench --addr "$addr" --certs-dir "$certs" --workload "$wl" --concurrency "$c" --duration "${DURATION}s" \
		--warmup "$WARMUP" --progress 5s --json "$work/$wl-$c.json" | tee "$work/$wl-$c.out" | sed 's/^/    /'
	GW[$r]=$(grep '^summary ' "$work/$wl-$c.out")
	n=$(($(checkpoints) - ck))
	CKS+=", $wl $c: $n"
	echo "    checkpoints during it: $n"
done
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"${GW[$1]}"; }

table=$(
	echo "| gateway workload | clients | gateway ok/s | p50 ms | p99 ms | errors | pgbench -N tps | p50 ms | p99 ms | ratio (ok/s ÷ tps) | p50 − pgbench p50 |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for r in "${runs[@]}"; do
		c=${r##*:}
		awk -v wl="${r%%:*}" -v c="$c" -v t="$(field "$r" throughput)" -v p50="$(field "$r" p50_ms)" -v p99="$(field "$r" p99_ms)" \
			-v e="$(field "$r" errors)" -v pt="${PG_TPS[$c]}" -v pp50="${PG_P50[$c]}" -v pp99="${PG_P99[$c]}" \
			'BEGIN {printf "| %s | %d | %.0f | %.2f | %.2f | %d | %.0f | %.2f | %.2f | %.2f× | %+.2f ms |\n", wl, c, t, p50, p99, e, pt, pp50, pp99, t/pt, p50-pp50}'
	done
)
goals=$(awk -v a32="$(field "award:$MAXC" throughput)" -v p99="$(field "award:$MAXC" p99_ms)" -v pg32="${PG_TPS[$MAXC]}" \
	-v a1p50="$(field "award:1" p50_ms)" -v pg1p50="${PG_P50[1]:-nan}" -v hot="$(field "hot-partner:$MAXC" throughput)" \
	-v spread="$(field "spread:$MAXC" throughput)" -v replay="$(field "replay:$MAXC" throughput)" -v c="$MAXC" '
	function verdict(ok) { return ok ? "met" : "**not met**" }
	BEGIN {
		printf "- award at %d clients ≥ 2× pgbench -N: %.2f× — %s\n", c, a32/pg32, verdict(a32 >= 2*pg32)
		printf "- award p99 at %d clients < 25 ms: %.2f ms — %s\n", c, p99, verdict(p99 < 25)
		if (pg1p50 != "nan") printf "- award p50 at 1 client within 0.5 ms of pgbench -N: %+.2f ms — %s\n", a1p50-pg1p50, verdict(a1p50-pg1p50 <= 0.5)
		printf "- hot-partner ≥ 0.9× spread: %.2f× — %s\n", hot/spread, verdict(hot >= 0.9*spread)
		printf "- replay ≥ 2× award: %.2f× — %s\n", replay/a32, verdict(replay >= 2*a32)
	}')

echo
echo "Gateway vs pgbench -N (same PostgreSQL, durable commits, ${DURATION}s each)"
echo "$table"
echo
echo "Issue 6 goals:"
echo "$goals"

[[ -n $DOC ]] || exit 0
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
section="$work/section.md"
{
	echo "## Gateway vs pgbench"
	echo
	echo "Measured by \`make bench\` (\`scripts/bench.sh\`) on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ', with uncommitted changes in the tree')."
	echo
	echo "- **Machine:** $(nproc) CPUs ($cpu), $mem memory, $(uname -sr). Server, gateway and load generators share it."
	echo "- **Database:** PostgreSQL $pgversion started by \`coalition dev --ephemeral\`: $settings."
	echo "- **Baseline:** \`pgbench -i -s $SCALE\`, then \`pgbench -N -M prepared -c C -j min(C,2) -T $DURATION --max-tries=20 -l\` on the same server; p50/p99 from its per-transaction log."
	echo "- **Gateway:** \`coalition bench --workload W --concurrency C --duration ${DURATION}s --warmup $WARMUP\` over mTLS gRPC; latencies of successful calls, measured by the client."
	echo "- **Each measurement** starts after a \`CHECKPOINT\`, so none pays for the writes of the one before; checkpoints during each: $CKS."
	echo
	echo "$table"
	echo
	echo "Issue 6 goals, as measured in this run:"
	echo
	echo "$goals"
	echo
} >"$section"
[[ -f $DOC ]] || printf '# Benchmarks\n\n' >"$DOC"
awk -v sec="$section" '
	BEGIN { while ((getline l < sec) > 0) s = s l "\n" }
	/^## Gateway vs pgbench/ { printf "%s", s; skip = 1; done = 1; next }
	skip && /^## / { skip = 0 }
	!skip { print }
	END { if (!done) printf "\n%s", s }' "$DOC" >"$work/doc.md"
cp "$work/doc.md" "$DOC"
echo
echo "bench: wrote the section \"Gateway vs pgbench\" of $DOC"
