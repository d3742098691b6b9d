#!/usr/bin/env bash
# Runs the CLI against real segments: a live one must be listed with its policy and survive `clean`; a stale one
# (its creator died) must be listed as unused and be removed by `clean`; bad input must fail with a message.
set -u
cli=$1
maker=$2
fail=0
checks=0
check() { checks=$((checks + 1)); if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi; }

out=$("$cli" topology); check "topology lists node 0" '[[ "$out" == *"node 0 cpus:"* ]]'

# Every name starts with a prefix of this run's own, and `clean` is limited to it, so that tests running at the
# same time never see each other's segments removed.
prefix="cli-$$-"
live="${prefix}live"; stale="${prefix}stale"
"$maker" "$stale" keep                      # creates, keeps, exits: now stale
coproc MAKER { "$maker" "$live" hold; }     # creates and holds until its stdin closes
read -r ready <&"${MAKER[0]}"
check "maker holds the live segment" '[ "$ready" = ready ]'

out=$("$cli" segments)
check "segments lists the live segment with its policy" '[[ "$out" == *"$live"*"local"* ]]'
check "segments lists the stale segment" '[[ "$out" == *"$stale"* ]]'
json=$("$cli" segments --json)
check "json output names the segment" '[[ "$json" == *"\"name\": \"$live\""* ]]'

out=$("$cli" clean --dry-run --prefix "$prefix")
check "dry run names the stale segment" '[[ "$out" == *"numa_mp.$stale"* ]]'
check "dry run spares the live segment" '[[ "$out" != *"$live"* ]]'
check "dry run removed nothing" '[ -e /dev/shm/numa_mp.$stale ]'
out=$("$cli" clean --prefix "$prefix")
check "clean removes the stale segment" '[ ! -e /dev/shm/numa_mp.$stale ]'
check "clean keeps the live segment" '[ -e /dev/shm/numa_mp.$live ]'
maker_pid=$MAKER_PID
eval "exec ${MAKER[1]}>&-"                  # releases the holder
wait "$maker_pid"

out=$("$cli" policy "interleave:0"); check "policy prints both forms" '[[ "$out" == *"MPOL_INTERLEAVE"* ]]'
out=$("$cli" policy "bind:2-1" 2>&1); rc=$?
check "a malformed policy fails naming the rule" '[ $rc -ne 0 ] && [[ "$out" == *"malformed-node-list"* ]]'
out=$("$cli" frobnicate 2>&1); rc=$?
check "an unknown command prints usage" '[ $rc -eq 2 ] && [[ "$out" == *"usage"* ]]'

# The Catch2-style summary line that .ci/run counts.
if [ $fail -eq 0 ]; then echo "All tests passed ($checks assertions in 1 test cases)"; else echo "test cases: 1 | 0 passed | 1 failed"; fi
exit $fail
