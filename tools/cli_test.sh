#!/usr/bin/env bash
# Runs the CLI against real segments: a live one must be listed with its policy and survive `clean`; stale ones
# (their creator died or was killed) must be listed as unused and be removed by `clean`; `clean --dry-run` must
# name exactly what `clean` removes; bad input must fail with a message.
set -u
cli=$1
maker=$2
fail=0
checks=0
check() { checks=$((checks + 1)); if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; return 1; fi; }

out=$("$cli" topology); check "topology lists node 0" '[[ "$out" == *"node 0 cpus:"* ]]'

# Every name starts with a prefix of this run's own, and `clean` is limited to it, so that tests running at the
# same time never see each other's segments removed.
prefix="cli-$$-"
live="${prefix}live"; stale="${prefix}stale"
"$maker" "$stale" keep                      # creates, keeps, exits: now stale
# Segments in every state the stale rule tells apart, beside the kept one above and the live one below:
# - killed: its creator was SIGKILLed while holding it (stale);
# - orphan: a temporary whose creator died before publishing it (stale);
# - unfinished: a temporary whose creator is alive (this shell) and not mapping it yet: still being created, so
#   neither `clean` nor its dry run may touch it.
killed="${prefix}killed"
coproc VICTIM { exec "$maker" "$killed" hold; }
read -r ready <&"${VICTIM[0]}"
check "maker holds the segment it will be killed with" '[ "$ready" = ready ]'
victim_pid=$VICTIM_PID
kill -KILL "$victim_pid"
wait "$victim_pid" 2>/dev/null
check "a killed holder leaves its segment behind" '[ -e /dev/shm/numa_mp.$killed ]'
true & dead_pid=$!; wait "$dead_pid"
orphan_file="numa_mp~${dead_pid}~0~${prefix}orphan"
unfinished_file="numa_mp~$$~0~${prefix}unfinished"
: > "/dev/shm/$orphan_file"
: > "/dev/shm/$unfinished_file"

coproc MAKER { "$maker" "$live" hold; }     # creates and holds until its stdin closes
read -r ready <&"${MAKER[0]}"
check "maker holds the live segment" '[ "$ready" = ready ]'

out=$("$cli" segments)
check "segments lists the live segment with its policy" '[[ "$out" == *"$live"*"local"* ]]'
check "segments lists the stale segment" '[[ "$out" == *"$stale"* ]]'
json=$("$cli" segments --json)
check "json output names the segment" '[[ "$json" == *"\"name\": \"$live\""* ]]'

dry=$("$cli" clean --dry-run --prefix "$prefix")
check "dry run names the stale segment" '[[ "$dry" == *"numa_mp.$stale"* ]]'
check "dry run spares the live segment" '[[ "$dry" != *"$live"* ]]'
check "dry run spares a temporary whose creator is alive" '[[ "$dry" != *"$unfinished_file"* ]]'
check "dry run removed nothing" '[ -e /dev/shm/numa_mp.$stale ]'
out=$("$cli" clean --prefix "$prefix")
check "clean removes the stale segment" '[ ! -e /dev/shm/numa_mp.$stale ]'
check "clean removes the segment of a killed holder" '[ ! -e /dev/shm/numa_mp.$killed ]'
check "clean removes the temporary of a dead creator" '[ ! -e "/dev/shm/$orphan_file" ]'
check "clean keeps the live segment" '[ -e /dev/shm/numa_mp.$live ]'
check "clean keeps a temporary whose creator is alive" '[ -e "/dev/shm/$unfinished_file" ]'
would=$(sed -n 's/^would remove //p' <<<"$dry" | sort)
removed=$(sed -n 's/^removed //p' <<<"$out" | sort)
expected=$(printf '%s\n' "numa_mp.$stale" "numa_mp.$killed" "$orphan_file" | sort)
check "dry run lists exactly what clean removes" '[ "$would" = "$removed" ] && [ "$removed" = "$expected" ]' ||
  printf 'would remove:\n%s\nremoved:\n%s\nexpected:\n%s\n' "$would" "$removed" "$expected"
rm -f "/dev/shm/$unfinished_file"
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
