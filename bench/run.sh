#!/usr/bin/env bash
# bench/run.sh measures michi side by side with nginx, haproxy and a direct
# connection, and writes BENCHMARKS.md, bench/results/results.json and
# bench/results/chart.png. It installs what is missing, builds michi and the
# harness, then runs bench/cmd/bench with the arguments given, e.g.
#
#   bench/run.sh                      # full run, about 30 minutes
#   bench/run.sh --quick              # one short repetition, report in bench/out/
#   bench/run.sh -targets direct,nginx,haproxy -sections latency,cpu
#   bench/run.sh -report-only         # re-render BENCHMARKS.md from saved results
#
# Not part of CI: it needs two quiet cores and half an hour.
set -euo pipefail

cd "$(dirname "$0")/.."
FORTIO_VERSION=v1.66.5 # newer versions do not install from the module proxy

sudo_if_needed() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages, by the command each provides.
declare -A packages=(
	[nginx]=nginx
	[haproxy]=haproxy
	[wrk]=wrk
	[h2load]=nghttp2-client
	[gnuplot]=gnuplot-nox
	[taskset]=util-linux
)
missing=()
for cmd in "${!packages[@]}"; do
	# nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
	command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || missing+=("${packages[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench: installing ${missing[*]}" >&2
	sudo_if_needed apt-get update -qq
	sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

gobin="$(go env GOPATH)/bin"
fortio="$gobin/fortio"
if ! "$fortio" version 2>/dev/null | grep -qx "${FORTIO_VERSION#v}"; then
	echo "bench: installing fortio $FORTIO_VERSION" >&2
	go install "fortio.org/fortio@$FORTIO_VERSION"
fi

mkdir -p bench/out
go build -o bench/out/michi ./cmd/michi
# The report names the commit michi was built from (-dirty: with the
# working tree's uncommitted changes).
git describe --always --dirty >bench/out/michi.commit 2>/dev/null || echo unknown >bench/out/michi.commit
go build -o bench/out/upstream ./bench/upstream
go build -o bench/out/bench ./bench/cmd/bench

# The harness itself stays on the load generator's core, so that its own
# work (sampling /proc, rewriting configs during the churn test) never
# competes with the proxy under test on core 0.
exec taskset -c 1 bench/out/bench -repo . -fortio "$fortio" "$@"
