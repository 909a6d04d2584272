#!/usr/bin/env bash
# ensure-postgres.sh: make sure PostgreSQL server binaries (initdb, postgres,
# and pgbench) are installed, for tests and `coalition dev`, which start their
# own server with settlement/sqlstore/localpg.
#
# Idempotent: does nothing when initdb is on PATH or under
# /usr/lib/postgresql/<ver>/bin (where Debian installs it, off PATH).
# Otherwise installs the Debian packages with apt-get, as root or via sudo.
# The Debian package may create and start its own "main" cluster; nothing here
# uses or needs it.
set -euo pipefail

packages=(postgresql postgresql-contrib postgresql-client)

die() {
	echo "ensure-postgres: error: $*" >&2
	exit 1
}

# find_initdb prints the initdb to use: PATH first, then the newest version.
find_initdb() {
	if command -v initdb >/dev/null 2>&1; then
		command -v initdb
		return 0
	fi
	local newest
	newest=$(ls -1d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
	[ -n "$newest" ] && [ -x "$newest" ] || return 1
	echo "$newest"
}

# report prints what was found; pgbench is wanted for load tests but not for
# `go test`, so its absence only warns.
report() {
	local initdb=$1 dir
	dir=$(dirname "$(readlink -f "$initdb")")
	echo "ensure-postgres: using PostgreSQL from $dir ($("$initdb" --version))"
	if [ -x "$dir/pgbench" ] || command -v pgbench >/dev/null 2>&1; then
		echo "ensure-postgres: pgbench available"
	else
		echo "ensure-postgres: warning: pgbench not found (Debian ships it in postgresql-<ver>)" >&2
	fi
}

if initdb=$(find_initdb); then
	report "$initdb"
	exit 0
fi

command -v apt-get >/dev/null 2>&1 ||
	die "PostgreSQL is not installed and there is no apt-get: install the PostgreSQL server (initdb, postgres, pgbench) with your package manager"

if [ "$(id -u)" -eq 0 ]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1; then
	sudo=(sudo)
else
	die "PostgreSQL is not installed and installing it needs root: run 'apt-get install ${packages[*]}' as root"
fi

echo "ensure-postgres: installing ${packages[*]}"
${sudo[@]+"${sudo[@]}"} apt-get update
# env: sudo would drop DEBIAN_FRONTEND from our environment.
${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y --no-install-recommends "${packages[@]}"

initdb=$(find_initdb) || die "installed ${packages[*]} but still no initdb under PATH or /usr/lib/postgresql/*/bin"
report "$initdb"
