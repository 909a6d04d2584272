#!/usr/bin/env bash
# make bench: the gateway measured side by side with the database's own ceiling, in one run.
#
# Starts `coalition dev --ephemeral` (its PostgreSQL has durable commits: fsync, synchronous_commit
# and full_page_writes on, SERIALIZABLE by default), runs `pgbench -N` (update a balance, insert a
# history row: the database's own ceiling for one ledger write) against that same server, then
# `coalition bench` against the gateway at the same client counts, and prints one table with
# both and their ratio. During each measurement it reads from /proc the CPU time of the database
# (every PostgreSQL process), the gateway and the load generator, and prints it per operation with
# the most operations per second the machine's CPUs allow at that cost: the bound a 2-core machine
# puts on the throughput goal, measured in the same run. A replay at 1 client (mTLS gRPC and one
# key lookup) is measured as the gateway's 1-client floor. Writes the section "Gateway vs pgbench"
# of docs/BENCHMARKS.md (other sections of that file are kept).
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

# CPU accounting, over the middle of each measurement (after its warmup, before its end), so a
# skeptic can see where the time of one operation goes and what the machine allows at most.
# cpu_snap prints "pid ppid comm ticks" for every process, then "machine busy idle" in ticks.
cpu_snap() {
	local s l r
	for s in /proc/[0-9]*/stat; do
		read -r l <"$s" 2>/dev/null || continue
		r=${l##*) }
		l=${l#*(}
		l=${l%%)*}
		# shellcheck disable=SC2086
		set -- $r
		echo "${s//[!0-9]/} $2 ${l// /_} $((${12} + ${13}))"
	done
	awk '/^cpu / {print "machine", $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat
}
# cpu_sample START LENGTH OUT: in the background, snapshots START seconds from now and LENGTH
# seconds later; OUT gets "database gateway client busy idle seconds" (ticks, and the window
# in seconds). database: the PostgreSQL processes (children of coalition dev); gateway:
# coalition dev itself; client: pgbench or coalition bench started by this script.
cpu_sample() {
	(
		sleep "$1"
		cpu_snap >"$3.a"
		t0=$(date +%s.%N)
		sleep "$2"
		cpu_snap >"$3.b"
		t1=$(date +%s.%N)
		awk -v dev="$dev" -v me="$$" -v secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" '
			FNR == NR { if ($1 == "machine") { b0 = $2; i0 = $3 } else t0[$1] = $4; next }
			$1 == "machine" { b1 = $2; i1 = $3; next }
			{ pp[$1] = $2; comm[$1] = $3; t1[$1] = $4 }
			function under(p, anc,   n) { for (n = 0; p != "" && p > 1 && n < 64; n++) { if (p == anc) return 1; p = pp[p] } return 0 }
			END {
				for (p in t1) {
					if (!(p in t0)) continue
					d = t1[p] - t0[p]
					if (p == dev) gw += d
					else if (under(p, dev)) db += d
					else if (under(p, me) && (comm[p] == "pgbench" || comm[p] ~ /^coalition/)) cl += d
				}
				printf "%d %d %d %d %d %s\n", db, gw, cl, b1 - b0, i1 - i0, secs
			}' "$3.a" "$3.b" >"$3"
	) &
}
TICK=$(getconf CLK_TCK)
# The sampling window: from 1 s after the warmup to 1 s before the end.
WARM_S=1
[[ $WARMUP =~ ^([0-9]+)s$ ]] && WARM_S=$((BASH_REMATCH[1] + 1))
SPAN=$((DURATION > 3 ? DURATION - 2 : 1))
NCPU=$(nproc)
# cpu_report FILE OPS_PER_S: "D G C T B N": CPU µs per operation of the database, the gateway,
# the client and their total; the machine's busy percentage; and the ceiling N ops/s that NCPU
# CPUs allow at T µs per operation, 100% busy.
cpu_report() {
	read -r db gw cl busy idle secs <"$1"
	awk -v db="$db" -v gw="$gw" -v cl="$cl" -v busy="$busy" -v idle="$idle" -v secs="$secs" -v rate="$2" -v tick="$TICK" -v ncpu="$NCPU" '
		BEGIN {
			ops = rate * secs
			if (ops <= 0 || db + gw + cl == 0) { printf "- - - - %.0f -\n", 100 * busy / (busy + idle + 1e-9); exit }
			us = 1e6 / tick / ops
			t = (db + gw + cl) * us
			printf "%.0f %.0f %.0f %.0f %.0f %.0f\n", db * us, gw * us, cl * us, t, 100 * busy / (busy + idle), ncpu * 1e6 / t
		}'
}

# quantile FILE Q: the Q quantile of the sorted numbers in FILE (nearest rank).
quantile() { awk -v q="$2" '{v[NR]=$1} END {if (NR == 0) {print "nan"; exit} r=int(q*NR); if (r < q*NR) r++; if (r < 1) r=1; print v[r]}' "$1"; }

# cpu_line REPORT WHAT: prints a cpu_report.
cpu_line() {
	read -r db gw cl t busy ceil <<<"$1"
	printf '    CPU per %s: database %s µs, gateway %s µs, client %s µs; total %s µs (machine %s%% busy): %s CPUs allow at most %s/s\n' \
		"$2" "$db" "$gw" "$cl" "$t" "$busy" "$NCPU" "$ceil"
}

CKS=""
declare -A PG_TPS PG_P50 PG_P99 CPU
for c in $CLIENTS; do
	j=$((c < 2 ? c : 2))
	echo "bench: pgbench -N -M prepared -c $c -j $j -T $DURATION ..."
	settle
	ck=$(checkpoints)
	cpu_sample 1 "$SPAN" "$work/cpu-pgbench-$c"
	sampler=$!
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
	wait "$sampler"
	CPU["pgbench:$c"]=$(cpu_report "$work/cpu-pgbench-$c" "${PG_TPS[$c]}")
	cpu_line "${CPU["pgbench:$c"]}" transaction
done

declare -A GW
runs=()
for c in $CLIENTS; do runs+=("award:$c"); done
runs+=("spread:$MAXC" "hot-partner:$MAXC" "replay:$MAXC")
# A replay at 1 client is the gateway's floor at 1 client: mTLS gRPC, one key lookup, no
# transaction. The 1-client award goal is measured against it as well.
[[ " $CLIENTS " == *" 1 "* && $MAXC != 1 ]] && runs+=("replay:1")
for r in "${runs[@]}"; do
	wl=${r%%:*} c=${r##*:}
	echo "bench: coalition bench --workload $wl --concurrency $c --duration ${DURATION}s --warmup $WARMUP ..."
	settle
	ck=$(checkpoints)
	cpu_sample "$WARM_S" "$SPAN" "$work/cpu-$wl-$c"
	sampler=$!
	"$BIN" bench --addr "$addr" --certs-dir "$certs" --workload "$wl" --concurrency "$c" --duration "${DURATION}s" \
		--warmup "$WARMUP" --progress 5s --json "$work/$wl-$c.json" | tee "$work/$wl-$c.out" | sed 's/^/    /'
	GW[$r]=$(grep '^summary ' "$work/$wl-$c.out")
	n=$(($(checkpoints) - ck))
	CKS+=", $wl $c: $n"
	echo "    checkpoints during it: $n"
	wait "$sampler"
	CPU[$r]=$(cpu_report "$work/cpu-$wl-$c" "$(sed -n 's/.* throughput=\([^ ]*\).*/\1/p' <<<"${GW[$r]}")")
	cpu_line "${CPU[$r]}" call
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
cputable=$(
	echo "| measurement | clients | ops/s | database µs | gateway µs | client µs | total µs | machine busy | at most, ${NCPU} CPUs 100% busy |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for c in $CLIENTS; do
		read -r db gw cl t busy ceil <<<"${CPU["pgbench:$c"]}"
		printf '| pgbench -N | %d | %.0f | %s | %s | %s | %s | %s%% | %s/s |\n' "$c" "${PG_TPS[$c]}" "$db" "$gw" "$cl" "$t" "$busy" "$ceil"
	done
	for r in "${runs[@]}"; do
		read -r db gw cl t busy ceil <<<"${CPU[$r]}"
		printf '| %s | %d | %.0f | %s | %s | %s | %s | %s%% | %s/s |\n' "${r%%:*}" "${r##*:}" "$(field "$r" throughput)" "$db" "$gw" "$cl" "$t" "$busy" "$ceil"
	done
)
read -r award_db award_gw award_cl award_cpu _ award_ceil <<<"${CPU["award:$MAXC"]}"
read -r pgb_db _ _ _ _ _ <<<"${CPU["pgbench:$MAXC"]}"
read -r _ _ _ replay_cpu _ replay_ceil <<<"${CPU["replay:$MAXC"]}"
goals=$(awk -v adb="$award_db" -v agw="$award_gw" -v acl="$award_cl" -v pgdb="$pgb_db" -v acpu="$award_cpu" -v aceil="$award_ceil" -v rcpu="$replay_cpu" -v rceil="$replay_ceil" -v ncpu="$NCPU" \
	-v r1p50="$(field "replay:1" p50_ms)" \
	-v a32="$(field "award:$MAXC" throughput)" -v p99="$(field "award:$MAXC" p99_ms)" -v pg32="${PG_TPS[$MAXC]}" \
	-v a1p50="$(field "award:1" p50_ms)" -v pg1p50="${PG_P50[1]:-nan}" -v hot="$(field "hot-partner:$MAXC" throughput)" \
	-v spread="$(field "spread:$MAXC" throughput)" -v replay="$(field "replay:$MAXC" throughput)" -v c="$MAXC" '
	function verdict(ok) { return ok ? "met" : "**not met**" }
	BEGIN {
		printf "- award at %d clients ≥ 2× pgbench -N: %.2f× — %s\n", c, a32/pg32, verdict(a32 >= 2*pg32)
		if (acpu + 0 > 0 && agw + acl > 0 && rcpu + 0 > 0) {
			printf "  - CPU per award, all processes: %d µs, so %d CPUs allow at most %d awards/s (%.2f× pgbench -N) even 100%% busy; a replay, which writes nothing, takes %d µs (at most %d/s, %.2f×)\n", acpu, ncpu, aceil, aceil/pg32, rcpu, rceil, rceil/pg32
			budget = ncpu * 1e6 / (2 * pg32)
			printf "  - at 2× (%d awards/s) an award may cost %d µs of CPU in all: beside the database'"'"'s %d µs that leaves %d µs for the gateway and its client, which take %d µs now\n", 2 * pg32, budget, adb, budget - adb, agw + acl
		}
		if (adb + 0 > 0 && pgdb + 0 > 0) printf "  - database CPU per award: %d µs, against %d µs per pgbench -N transaction: an award costs the database %.2f× what a pgbench -N transaction does\n", adb, pgdb, adb/pgdb
		printf "- award p99 at %d clients < 25 ms: %.2f ms — %s\n", c, p99, verdict(p99 < 25)
		if (pg1p50 != "nan") printf "- award p50 at 1 client within 0.5 ms of pgbench -N: %+.2f ms — %s\n", a1p50-pg1p50, verdict(a1p50-pg1p50 <= 0.5)
		if (pg1p50 != "nan" && r1p50 != "") printf "  - a replay at 1 client (mTLS gRPC and one key lookup, no transaction) has a p50 of %.2f ms; the award spends %.2f ms more, pgbench -N %.2f ms in all\n", r1p50, a1p50-r1p50, pg1p50
		printf "- hot-partner ≥ 0.9× spread: %.2f× — %s\n", hot/spread, verdict(hot >= 0.9*spread)
		printf "- replay ≥ 2× award: %.2f× — %s\n", replay/a32, verdict(replay >= 2*a32)
	}')

echo
echo "Gateway vs pgbench -N (same PostgreSQL, durable commits, ${DURATION}s each)"
echo "$table"
echo
echo "CPU per operation (µs, all processes, from 1 s after the warmup to 1 s before the end)"
echo "$cputable"
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
	echo "**CPU per operation**, in µs of CPU time of all the processes of each kind (the database: every PostgreSQL process; the client: pgbench or \`coalition bench\`), read from \`/proc\` from 1 s after each warmup to 1 s before its end; the last column is what $NCPU CPUs allow at that cost, 100% busy:"
	echo
	echo "$cputable"
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
