#!/usr/bin/env bash
# Runs the `numa_mp` command as a user would, against real segments, processes and a running ipc-manager:
# - usage: --help (global and per command) on stdout with exit 0; an unknown command, option or extra argument
#   named on stderr with exit 2;
# - --json on every command parses (python3 json) with the right types (numbers as numbers, pages per node as an
#   object);
# - segments/clean: a live segment is listed with its policy and survives `clean`; stale ones (creator died or was
#   killed) are removed, and `clean --dry-run` names exactly what `clean` removes;
# - inspect: a queue holding items, a lock whose holder was killed, an interleaved array in a default-policy segment
#   (its own policy shown, also in `segments`);
# - manager key/status: key file permissions and overwrite refusal; status of a running ipc-manager with a client,
#   on a Unix socket and on TCP (127.0.0.1, a port the server picks and prints); --timeout-ms against a listener
#   that never answers.
set -u
cli=$1
maker=$2
manager=$3
holder=$4
fail=0
checks=0
check() { checks=$((checks + 1)); if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; return 1; fi; }

# Runs the CLI, keeping stdout, stderr and the exit code apart: run ARGS... sets $out, $err, $rc.
errfile=$(mktemp)
run() { out=$("$cli" "$@" 2>"$errfile"); rc=$?; err=$(cat "$errfile"); }
# Checks JSON on stdin with a Python expression over `j` (the parsed document); prints the document on failure.
json_ok() {
  python3 -c '
import json, sys
j = json.load(sys.stdin)
ok = eval("(" + sys.argv[1] + "\n)")
if not ok:
    print(json.dumps(j, indent=1), file=sys.stderr)
sys.exit(0 if ok else 1)' "$1"
}

# ---- usage ----
for h in --help -h; do
  run "$h"
  check "numa_mp $h prints usage on stdout and exits 0" '[ $rc -eq 0 ] && [[ "$out" == usage:* ]] && [ -z "$err" ]'
done
for c in topology segments "inspect" clean policy "manager status" "manager key"; do
  run $c --help
  check "numa_mp $c --help prints its usage on stdout and exits 0" \
    '[ $rc -eq 0 ] && [[ "$out" == "usage: numa_mp $c"* ]] && [[ "$out" == *--json* ]] && [ -z "$err" ]'
done
run manager --help
check "numa_mp manager --help lists its commands" '[ $rc -eq 0 ] && [[ "$out" == *"manager status"*"manager key"* ]]'
run frobnicate
check "an unknown command is named on stderr, exit 2" \
  '[ $rc -eq 2 ] && [[ "$err" == *"unknown command '"'"'frobnicate'"'"'"* ]] && [ -z "$out" ]'
run --frobnicate topology
check "an unknown global option is named, exit 2" '[ $rc -eq 2 ] && [[ "$err" == *"--frobnicate"* ]]'
run segments --frob
check "an unknown option of a command is named, exit 2" '[ $rc -eq 2 ] && [[ "$err" == *"--frob"* ]] && [ -z "$out" ]'
run segments extra
check "an extra argument is named, exit 2" '[ $rc -eq 2 ] && [[ "$err" == *"unexpected argument '"'"'extra'"'"'"* ]]'
run policy interleave:0 local
check "an extra argument after a positional is named, exit 2" '[ $rc -eq 2 ] && [[ "$err" == *"'"'"'local'"'"'"* ]]'
run inspect
check "a missing argument is named, exit 2" '[ $rc -eq 2 ] && [[ "$err" == *"missing SEGMENT"* ]]'
run manager frob
check "an unknown manager command is named, exit 2" '[ $rc -eq 2 ] && [[ "$err" == *"'"'"'frob'"'"'"* ]]'
run
check "no command at all is an error, exit 2" '[ $rc -eq 2 ] && [[ "$err" == *"missing a command"* ]]'

# ---- topology ----
run topology; check "topology lists node 0" '[ $rc -eq 0 ] && [[ "$out" == *"node 0 cpus:"* ]]'
run topology --json
check "topology --json: nodes with integer cpus and memory" '[ $rc -eq 0 ] && json_ok "
  j[\"nodes\"][0][\"id\"] == 0 and all(type(c) is int for c in j[\"nodes\"][0][\"cpus\"])
  and len(j[\"nodes\"][0][\"cpus\"]) > 0 and type(j[\"nodes\"][0][\"memory_total_bytes\"]) is int
  and j[\"nodes\"][0][\"memory_total_bytes\"] > 0 and 0 in j[\"online\"]" <<<"$out"'

# ---- segments and clean ----
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

coproc MAKER { exec "$maker" "$live" hold; }  # creates and holds until its stdin closes
read -r ready <&"${MAKER[0]}"
check "maker holds the live segment" '[ "$ready" = ready ]'
maker_pid=$MAKER_PID

run segments
check "segments lists the live segment with its policy" '[[ "$out" == *"$live"*"local"* ]]'
check "segments lists the stale segment" '[[ "$out" == *"$stale"* ]]'
run segments --json
check "segments --json: the live segment with numbers, users and pages per node as an object" '[ $rc -eq 0 ] && json_ok "
  [s for s in j if s[\"name\"] == \"$live\"][0][\"size_bytes\"] == 65536
  and [s for s in j if s[\"name\"] == \"$live\"][0][\"policy\"] == \"local\"
  and $maker_pid in [s for s in j if s[\"name\"] == \"$live\"][0][\"users\"]
  and type([s for s in j if s[\"name\"] == \"$live\"][0][\"pages\"][\"pages_per_node\"]) is dict
  and all(type(v) is int for v in [s for s in j if s[\"name\"] == \"$live\"][0][\"pages\"][\"pages_per_node\"].values())
  and [s for s in j if s[\"name\"] == \"$live\"][0][\"pages\"][\"pages_total\"] == 16" <<<"$out"'

run clean --dry-run --prefix "$prefix"; dry=$out
check "dry run names the stale segment" '[[ "$dry" == *"numa_mp.$stale"* ]]'
check "dry run spares the live segment" '[[ "$dry" != *"$live"* ]]'
check "dry run spares a temporary whose creator is alive" '[[ "$dry" != *"$unfinished_file"* ]]'
check "dry run removed nothing" '[ -e /dev/shm/numa_mp.$stale ]'
run clean --dry-run --prefix "$prefix" --json
check "clean --dry-run --json lists the same files" '[ $rc -eq 0 ] && json_ok "
  j[\"dry_run\"] is True and sorted(j[\"would_remove\"]) == sorted([\"numa_mp.$stale\", \"numa_mp.$killed\", \"$orphan_file\"])" <<<"$out"'
run clean --prefix "$prefix"
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
run clean --prefix "$prefix" --json
check "clean --json with nothing stale: an empty list" '[ $rc -eq 0 ] && json_ok "j[\"removed\"] == []" <<<"$out"'
rm -f "/dev/shm/$unfinished_file"
eval "exec ${MAKER[1]}>&-"                  # releases the holder
wait "$maker_pid"

# ---- inspect ----
objects="${prefix}objects"
coproc OBJECTS { exec "$maker" "$objects" objects; }
read -r locked <&"${OBJECTS[0]}"
check "maker built the objects and holds the lock" '[ "$locked" = locked ]'
objects_pid=$OBJECTS_PID
kill -KILL "$objects_pid"                   # dies holding the lock
wait "$objects_pid" 2>/dev/null
run inspect "$objects"
check "inspect shows the queue's fill level and abandoned count" '[ $rc -eq 0 ] && [[ "$out" == *"jobs"*"Queue"*"3/8 items, 0 abandoned"* ]]'
check "inspect names the dead owner of the lock" '[[ "$out" == *"ledger"*"Lock"*"owner died: $objects_pid"* ]]'
check "inspect shows the own interleave policy of an array" \
  '[[ "$out" == *"spread"*"Array"*"policy interleave:0, pages 0:2"* ]]'
check "inspect shows that an array without a policy follows the segment policy" \
  '[[ "$out" == *"plain"*"Array"*"policy default (the segment'"'"'s)"* ]]'
run inspect "$objects" --json
check "inspect --json: queue, dead lock owner and array placement with their types" '[ $rc -eq 0 ] && json_ok "
  (lambda o: o[\"jobs\"][\"kind\"] == \"Queue\" and o[\"jobs\"][\"size_approx\"] == 3 and o[\"jobs\"][\"capacity\"] == 8
   and o[\"jobs\"][\"abandoned_count\"] == 0 and o[\"jobs\"][\"closed\"] is False
   and o[\"jobs\"][\"lone_producer\"] in ($objects_pid, None) and o[\"jobs\"][\"lone_consumer\"] is None
   and o[\"ledger\"][\"owner\"] == {\"pid\": $objects_pid, \"alive\": False}
   and o[\"spread\"][\"policy\"] == \"interleave:0\" and o[\"spread\"][\"own_policy\"] is True
   and o[\"spread\"][\"length\"] == 1024 and o[\"spread\"][\"element_bytes\"] == 8
   and o[\"spread\"][\"pages\"][\"pages_per_node\"] == {\"0\": 2}
   and o[\"plain\"][\"policy\"] == \"default\" and o[\"plain\"][\"own_policy\"] is False)
  ({x[\"name\"]: x for x in j[\"objects\"]}) and j[\"policy\"] == \"default\"" <<<"$out"'
run segments --json
check "segments --json lists the interleaved array with its own policy in a default segment" '[ $rc -eq 0 ] && json_ok "
  [s for s in j if s[\"name\"] == \"$objects\"][0][\"policy\"] == \"default\"
  and {\"name\": \"spread\", \"policy\": \"interleave:0\", \"own_policy\": True} in [s for s in j if s[\"name\"] == \"$objects\"][0][\"arrays\"]" <<<"$out"'
run segments
check "segments shows the own policy of an array" '[[ "$out" == *"Array spread"*"policy interleave:0"* ]]'
run inspect "${prefix}missing"
check "inspect of a missing segment fails naming it, exit 1" '[ $rc -eq 1 ] && [[ "$err" == *"${prefix}missing"* ]]'
run clean --prefix "$prefix"
check "the objects segment is stale once its maker died" '[ ! -e /dev/shm/numa_mp.$objects ]'

# ---- policy ----
run policy "interleave:0"; check "policy prints both forms" '[[ "$out" == *"MPOL_INTERLEAVE"* ]]'
run policy "interleave:0" --json
check "policy --json parses" '[ $rc -eq 0 ] && json_ok "j[\"policy\"] == \"interleave:0\" and j[\"valid_on_this_machine\"] is True" <<<"$out"'
run policy "bind:2-1"
check "a malformed policy fails naming the rule, exit 1" '[ $rc -eq 1 ] && [[ "$err" == *"malformed-node-list"* ]]'

# ---- manager key and status ----
dir=$(mktemp -d /tmp/numa_mp_cli.XXXXXX)     # short: a socket path must fit in 108 bytes
key="$dir/manager.key"
run manager key "$key"
check "manager key writes a key file" '[ $rc -eq 0 ] && [ -f "$key" ]'
check "the key file is mode 600" '[ "$(stat -c %a "$key")" = 600 ]'
check "the key is 64 hex digits and a newline" '[[ "$(cat "$key")" =~ ^[0-9a-f]{64}$ ]] && [ "$(wc -c <"$key")" -eq 65 ]'
first_key=$(cat "$key")
run manager key "$key"
check "manager key refuses to overwrite, naming --force, exit 1" \
  '[ $rc -eq 1 ] && [[ "$err" == *"--force"* ]] && [ "$(cat "$key")" = "$first_key" ]'
run manager key "$key" --force --json
check "manager key --force writes a new key; --json parses" \
  '[ $rc -eq 0 ] && [ "$(cat "$key")" != "$first_key" ] && [ "$(stat -c %a "$key")" = 600 ] &&
   json_ok "j[\"key_bytes\"] == 64 and j[\"file\"] == \"$key\"" <<<"$out"'

sock="$dir/run/manager.sock"
"$manager" --listen "$sock" --key-file "$key" >"$dir/manager.log" 2>&1 &
manager_pid=$!
# Waits for the server's socket (generous: a loaded machine), naming the server if it ended first.
for _ in $(seq 1 600); do
  [ -S "$sock" ] && break
  kill -0 "$manager_pid" 2>/dev/null || break
  sleep 0.1
done
check "ipc-manager (pid $manager_pid) serves on its socket" '[ -S "$sock" ]' || cat "$dir/manager.log"
coproc HOLDER { exec "$holder" "$sock" "$key"; }
holder_pid=$HOLDER_PID
read -r ready <&"${HOLDER[0]}"
check "a client (pid $holder_pid) connected and made its objects" '[ "$ready" = ready ]'
run manager status "$sock" --key "$key"
check "manager status lists the objects and the clients" \
  '[ $rc -eq 0 ] && [[ "$out" == *"config"*"dict"*"jobs"*"queue"* ]] && [[ "$out" == *"$holder_pid"*yes*"shared memory"* ]]'
run manager status "$sock" --key "$key" --json
check "manager status --json: objects with kinds, clients with integer pids and their transport, this command marked" '[ $rc -eq 0 ] && json_ok "
  j[\"objects\"] == [{\"name\": \"config\", \"kind\": \"dict\"}, {\"name\": \"jobs\", \"kind\": \"queue\"}]
  and any(c[\"pid\"] == $holder_pid and c[\"authenticated\"] is True and c[\"this_command\"] is False for c in j[\"clients\"])
  and all(c[\"transport\"] == \"shared memory\" for c in j[\"clients\"])
  and [c[\"this_command\"] for c in j[\"clients\"]].count(True) == 1
  and all(type(c[\"connected_ms\"]) is int and type(c[\"uid\"]) is int for c in j[\"clients\"])" <<<"$out"'
NUMA_MP_MANAGER_KEY="$key" run manager status "$sock"
check "manager status takes the key file from NUMA_MP_MANAGER_KEY" '[ $rc -eq 0 ] && [[ "$out" == *"config"* ]]'
(unset NUMA_MP_MANAGER_KEY; run manager status "$sock"
 [ $rc -eq 2 ] && [[ "$err" == *"--key"* ]]); rc=$?
check "manager status without a key names --key, exit 2" '[ $rc -eq 0 ]'
chmod 644 "$key"
run manager status "$sock" --key "$key"
check "a key file open to others is refused with the fix, exit 1" '[ $rc -eq 1 ] && [[ "$err" == *"chmod 600"* ]]'
chmod 600 "$key"
wrong="$dir/wrong.key"
"$cli" manager key "$wrong" >/dev/null
run manager status "$sock" --key "$wrong"
check "a wrong key fails authentication, exit 1" '[ $rc -eq 1 ] && [ -n "$err" ]'
# Lets the holder go (its stdin closes) and stops the server with SIGTERM; both must leave cleanly. $1: "" or " on TCP".
stop_holder_and_manager() {
  eval "exec ${HOLDER[1]}>&-"
  wait "$holder_pid"; holder_rc=$?
  check "the client$1 left cleanly" '[ $holder_rc -eq 0 ]'
  kill -TERM "$manager_pid"
  wait "$manager_pid"; manager_rc=$?
  check "ipc-manager$1 stopped cleanly" '[ $manager_rc -eq 0 ]'
}
stop_holder_and_manager ""

# ---- the same over TCP ----
"$manager" --listen tcp:127.0.0.1:0 --key-file "$key" >"$dir/tcp.log" 2>&1 &
manager_pid=$!
# Waits for the line that names the port the server got, naming the server if it ended first.
address=
for _ in $(seq 1 600); do
  address=$(sed -n 's/^ipc-manager: serving on \(tcp:127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$dir/tcp.log")
  [ -n "$address" ] && break
  kill -0 "$manager_pid" 2>/dev/null || break
  sleep 0.1
done
check "ipc-manager --listen tcp:127.0.0.1:0 (pid $manager_pid) prints the port it got" \
  '[ -n "$address" ] && [ "${address##*:}" -gt 0 ]' || cat "$dir/tcp.log"
coproc HOLDER { exec "$holder" "$address" "$key"; }
holder_pid=$HOLDER_PID
read -r ready <&"${HOLDER[0]}"
check "a client (pid $holder_pid) connected over TCP and made its objects" '[ "$ready" = ready ]'
run manager status "$address" --key-file "$key"
check "manager status over TCP lists the objects, the TCP clients and this command" \
  '[ $rc -eq 0 ] && [[ "$out" == *"$address"*"config"*"dict"*"jobs"*"queue"* ]] &&
   [[ "$out" == *"tcp:127.0.0.1:"*yes*"(this command)"* ]]'
run manager status "$address" --key-file "$key" --json
check "manager status --json over TCP: the address, clients by address, this command marked once" '[ $rc -eq 0 ] && json_ok "
  j[\"address\"] == \"$address\"
  and j[\"objects\"] == [{\"name\": \"config\", \"kind\": \"dict\"}, {\"name\": \"jobs\", \"kind\": \"queue\"}]
  and len(j[\"clients\"]) == 2 and all(c[\"address\"].startswith(\"tcp:127.0.0.1:\") for c in j[\"clients\"])
  and [c[\"this_command\"] for c in j[\"clients\"]].count(True) == 1" <<<"$out"'
run manager status "$address" --key-file "$wrong"
check "over TCP a wrong key fails authentication naming the address, exit 1" \
  '[ $rc -eq 1 ] && [[ "$err" == *"$address"* ]] && [[ "$out" != *config* ]]'
run manager status tcp:127.0.0.1:abc --key-file "$key"
check "a malformed TCP address is named with what is wrong, exit 1" \
  '[ $rc -eq 1 ] && [[ "$err" == *"tcp:127.0.0.1:abc"*"not a number"* ]]'
stop_holder_and_manager " on TCP"
run manager status "$address" --key-file "$key"
check "status of a stopped TCP server fails naming the address, exit 1" '[ $rc -eq 1 ] && [[ "$err" == *"$address"* ]]'

# ---- a peer that accepts and never answers ----
silent="$dir/run/silent.sock"
coproc SILENT {
  exec python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
print("listening", flush=True)
sys.stdin.read()  # until the test closes our stdin; nothing is ever accepted or answered
' "$silent"
}
silent_pid=$SILENT_PID
read -r listening <&"${SILENT[0]}"
check "a silent listener (pid $silent_pid) listens" '[ "$listening" = listening ]'
run manager status "$silent" --key-file "$key" --timeout-ms 300
check "manager status --timeout-ms gives up on a peer that never answers, naming it, exit 1" \
  '[ $rc -eq 1 ] && [[ "$err" == *"$silent"*"did not complete the handshake within 300 ms"* ]]'
run manager status "$silent" --key-file "$key" --timeout-ms 0
check "manager status --timeout-ms 0 is a usage error, exit 2" '[ $rc -eq 2 ] && [[ "$err" == *"--timeout-ms"* ]]'
eval "exec ${SILENT[1]}>&-"
wait "$silent_pid"
rm -rf "$dir" "$errfile"

# The Catch2-style summary line that .ci/run counts.
if [ $fail -eq 0 ]; then echo "All tests passed ($checks assertions in 1 test cases)"; else echo "test cases: 1 | 0 passed | 1 failed"; fi
exit $fail
