#!/usr/bin/env bash
# tests/numa_vm/run_vm_suite.sh: checks real NUMA page placement inside QEMU VMs with 2 and 4 nodes.
#
#   bash tests/numa_vm/run_vm_suite.sh            (from the repository root; needs no terminal and no input)
#
# Steps: install qemu-system-x86, busybox-static and cpio when missing (apt-get); download and unpack a Debian
# 6.12 kernel into a cache folder once; build the static test binary //tests/numa_vm:placement_vm_test with
# ./bazelw; pack an initramfs per VM (busybox, the binary, an init script); boot each VM under `timeout`; read
# the result lines from the serial console. Prints every result line, a summary per VM and, last, exactly
# "N passed, M failed" summed over both VMs. A VM that printed no "VM-RESULT:" line counts one extra failure.
# Exit status: 0 when everything passed, 1 when a check failed, 2 when the suite could not be set up.
#
# Environment (all optional):
#   BAZEL_OUTPUT_BASE   passed to ./bazelw as --output_base
#   NUMA_VM_CACHE       cache folder for the kernel (default ${XDG_CACHE_HOME:-$HOME/.cache}/numa_mp-vm)
#   NUMA_VM_KERNEL      a bzImage to boot instead of the cached Debian kernel
#   NUMA_VM_TIMEOUT     seconds one VM may run before it is killed (default 300)
#   NUMA_VM_ONLY        run only the VMs whose names are listed, e.g. "2node"
# Details: docs/numa_vm.md.
set -euo pipefail

say() { echo "numa_vm: $*"; }
die() { echo "numa_vm: ERROR: $*" >&2; exit 2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"
[ -x ./bazelw ] || die "run from a checkout of numa_mp: $repo_root/bazelw not found"

cache_dir="${NUMA_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/numa_mp-vm}"
vm_timeout="${NUMA_VM_TIMEOUT:-300}"
mkdir -p "$cache_dir" || die "cannot create the cache folder $cache_dir"
run_dir="$cache_dir/last-run"   # serial logs and initramfs of the latest run, kept for inspection
rm -rf "$run_dir" && mkdir -p "$run_dir"

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo -n); fi
fi
apt_log="$run_dir/apt.log"

# ---------------------------------------------------------------------------------------------------------------
# 1. Host packages.
packages=(qemu-system-x86 busybox-static cpio gzip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && [ "${#sudo_cmd[@]}" -eq 0 ]; then
    die "missing packages: ${missing[*]}; not root and no sudo. Install them with: apt-get install --no-install-recommends ${missing[*]}"
  fi
  say "installing ${missing[*]} (apt-get, --no-install-recommends)"
  if ! { "${sudo_cmd[@]}" apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; \
       } </dev/null >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    die "could not install ${missing[*]} (apt output: $apt_log)"
  fi
fi
for tool in qemu-system-x86_64 cpio gzip timeout readelf; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH"
done
busybox=/bin/busybox
[ -x "$busybox" ] && ! readelf -l "$busybox" 2>/dev/null | grep -q INTERP ||
  die "$busybox is missing or not static (package busybox-static)"

# ---------------------------------------------------------------------------------------------------------------
# 2. Kernel: a Debian 6.12 kernel (it has MPOL_WEIGHTED_INTERLEAVE), downloaded and unpacked once. Only the
#    package file is downloaded; nothing is installed on the host.
kernel="${NUMA_VM_KERNEL:-}"
if [ -z "$kernel" ]; then
  kernel="$(ls -1 "$cache_dir"/kernel/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)"
fi
if [ -z "$kernel" ]; then
  find_kernel_pkg() {
    apt-cache search linux-image-6.12 2>/dev/null | awk '{print $1}' | grep -- '-unsigned$' |
      grep -v -- '-cloud-' | grep -v -- '-rt-' | grep -- '-amd64-unsigned$' | sort -V | tail -n 1
  }
  pkg="$(find_kernel_pkg || true)"
  if [ -z "$pkg" ]; then
    say "no linux-image-6.12 package in the apt lists; running apt-get update"
    "${sudo_cmd[@]}" apt-get update -qq </dev/null >"$apt_log" 2>&1 || { tail -n 20 "$apt_log" >&2; die "apt-get update failed"; }
    pkg="$(find_kernel_pkg || true)"
  fi
  [ -n "$pkg" ] || die "apt knows no linux-image-6.12.*-amd64-unsigned package (Debian 12 bookworm-backports/security)"
  say "downloading $pkg into $cache_dir (once; about 107 MB)"
  dl="$(mktemp -d "$cache_dir/download.XXXXXX")"
  chmod 755 "$dl"
  if ! (cd "$dl" && apt-get download "$pkg") </dev/null >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    rm -rf "$dl"
    die "apt-get download $pkg failed (apt output: $apt_log)"
  fi
  # Only the kernel image and its config are needed, not the modules.
  mkdir -p "$dl/unpacked"
  deb="$(ls "$dl"/*.deb)"
  if ! dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dl/unpacked" --wildcards './boot/vmlinuz-*' './boot/config-*'; then
    rm -rf "$dl"
    die "could not unpack $deb"
  fi
  rm -rf "$cache_dir/kernel"
  mv "$dl/unpacked" "$cache_dir/kernel"
  rm -rf "$dl"
  kernel="$(ls -1 "$cache_dir"/kernel/boot/vmlinuz-* | sort -V | tail -n 1)"
fi
[ -f "$kernel" ] || die "kernel image $kernel not found"
say "kernel: $kernel"

# ---------------------------------------------------------------------------------------------------------------
# 3. The static test binary. --symlink_prefix=/ leaves the workspace's bazel-* links alone.
bazel_flags=(${BAZEL_OUTPUT_BASE:+--output_base=$BAZEL_OUTPUT_BASE})
target=//tests/numa_vm:placement_vm_test
say "building $target"
if ! ./bazelw "${bazel_flags[@]}" build --symlink_prefix=/ "$target" </dev/null >"$run_dir/bazel.log" 2>&1; then
  tail -n 40 "$run_dir/bazel.log" >&2
  die "bazel build $target failed (log: $run_dir/bazel.log)"
fi
bazel_bin="$(./bazelw "${bazel_flags[@]}" info bazel-bin </dev/null 2>/dev/null)" || die "bazel info bazel-bin failed"
test_bin="$bazel_bin/tests/numa_vm/placement_vm_test"
[ -x "$test_bin" ] || die "built binary $test_bin not found"
if readelf -l "$test_bin" | grep -q INTERP || readelf -d "$test_bin" 2>/dev/null | grep -q NEEDED; then
  die "$test_bin is dynamically linked; the initramfs has no libraries"
fi

# ---------------------------------------------------------------------------------------------------------------
# 4. Initramfs: one per VM, differing only in /vm.conf (the weights to write and the expectations to check).
make_initrd() {  # name weights args -> path of the initrd
  local name="$1" weights="$2" args="$3"
  local root="$run_dir/initrd-$name"
  mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
  cp "$busybox" "$root/bin/busybox"
  cp "$test_bin" "$root/placement_vm_test"
  cat >"$root/vm.conf" <<EOF
VM_NAME='$name'
VM_WEIGHTS='$weights'
VM_ARGS='$args'
EOF
  cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup || echo "VM-INFO: could not mount cgroup2 on /sys/fs/cgroup"
. /vm.conf
echo "VM-INFO: $VM_NAME: kernel $(uname -r), online nodes $(cat /sys/devices/system/node/online), cpus $(nproc)," \
  "thp $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
i=0
for w in $VM_WEIGHTS; do
  f=/sys/kernel/mm/mempolicy/weighted_interleave/node$i
  echo "$w" >"$f" || echo "VM-INFO: could not write weight $w to $f"
  i=$((i + 1))
done
/placement_vm_test $VM_ARGS
echo "VM-EXIT: $?"
poweroff -f
EOF
  chmod 755 "$root/init" "$root/placement_vm_test"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$run_dir/initrd-$name.gz"
  echo "$run_dir/initrd-$name.gz"
}

# ---------------------------------------------------------------------------------------------------------------
# 5. The VMs. Each topology is described once and turned into both QEMU options and the test's expectations.
#    Distances avoid 20, the kernel's default for remote nodes without a SLIT, so reading them proves the table
#    given with -numa dist reached the kernel.
total_passed=0
total_failed=0
summaries=()

run_vm() {  # name nodes "cpus per node (/)" "distance rows (/)" "weights"
  local name="$1" nodes="$2" cpus="$3" dist="$4" weights="$5"
  if [ -n "${NUMA_VM_ONLY:-}" ] && ! [[ " $NUMA_VM_ONLY " == *" $name "* ]]; then return 0; fi
  local -a cpu_list rows qemu_args
  IFS=/ read -r -a cpu_list <<<"$cpus"
  IFS=/ read -r -a rows <<<"$dist"
  local ncpus=0 i j mem=$((1024 / nodes))
  # thread=single: one host thread runs every vCPU. Multi-threaded TCG occasionally crashes the guest kernel at
  # boot while it patches its own code (an int3 "Oops" in sched_clock_cpu was seen with 4 vCPUs); the suite is
  # small, so determinism is worth more than the parallel speed-up.
  qemu_args=(-accel tcg,thread=single -cpu max -m 1024 -nodefaults -display none -no-reboot -monitor none)
  for ((i = 0; i < nodes; i++)); do
    local c="${cpu_list[$i]}"
    ncpus=$((ncpus + $(echo "$c" | tr ',' '\n' | awk -F- '{n += (NF == 2 ? $2 - $1 + 1 : 1)} END {print n}')))
    qemu_args+=(-object "memory-backend-ram,id=m$i,size=${mem}M" -numa "node,nodeid=$i,cpus=${c},memdev=m$i")
  done
  for ((i = 0; i < nodes; i++)); do
    local -a row
    IFS=, read -r -a row <<<"${rows[$i]}"
    for ((j = i + 1; j < nodes; j++)); do
      qemu_args+=(-numa "dist,src=$i,dst=$j,val=${row[$j]}" -numa "dist,src=$j,dst=$i,val=${row[$j]}")
    done
  done
  qemu_args+=(-smp "$ncpus")
  local args="--expect-nodes=$nodes --expect-cpus=$cpus --expect-distances=$dist --expect-weights=${weights// /,}"
  local initrd log="$run_dir/serial-$name.log"
  initrd="$(make_initrd "$name" "$weights" "$args")"
  say "booting $name VM: $nodes nodes, cpus $cpus, distances $dist, weights $weights (timeout ${vm_timeout}s)"
  local start=$SECONDS rc=0 attempt
  # A guest kernel that crashes while booting, before the test program printed a single line, is an emulator
  # hiccup, not a placement result: boot again (at most three boots). A crash or silence after the program started
  # is never retried, and three failed boots still count as a failure below.
  for attempt in 1 2 3; do
    rc=0
    rm -f "$log"
    timeout --kill-after=10 "$vm_timeout" qemu-system-x86_64 "${qemu_args[@]}" \
      -kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 quiet panic=-1" \
      -serial "file:$log" </dev/null >"$run_dir/qemu-$name.log" 2>&1 || rc=$?
    [ -f "$log" ] || : >"$log"
    tr -d '\r' <"$log" >"$log.txt"
    if grep -qE '^(PASS|FAIL|VM-RESULT)' "$log.txt" || ! grep -qE 'Kernel panic|Oops:' "$log.txt"; then break; fi
    say "$name: the guest kernel crashed while booting (boot $attempt of 3); serial log kept as $log.boot$attempt"
    cp "$log.txt" "$log.boot$attempt"
  done
  local secs=$((SECONDS - start))
  if [ "$rc" -ne 0 ]; then
    say "$name: qemu exited with status $rc$([ "$rc" -eq 124 ] && echo " (killed after ${vm_timeout}s)")"
    sed 's/^/  qemu: /' "$run_dir/qemu-$name.log" | tail -n 20
  fi

  grep -E '^(PASS|FAIL) ' "$log.txt" | sed "s/^/[$name] /" || true
  local pass_lines fail_lines result passed failed exit_line
  pass_lines=$(grep -c '^PASS ' "$log.txt" || true)
  fail_lines=$(grep -c '^FAIL ' "$log.txt" || true)
  result=$(grep -E '^VM-RESULT: [0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$log.txt" | tail -n 1 || true)
  exit_line=$(grep -E '^VM-EXIT: [0-9]+$' "$log.txt" | tail -n 1 || true)
  if [ -z "$result" ]; then
    passed=$pass_lines
    failed=$((fail_lines + 1))
    say "$name: FAIL: the VM printed no VM-RESULT line; last serial output ($log):"
    tail -n 25 "$log.txt" | sed 's/^/  serial: /'
  else
    passed=$(echo "$result" | sed -E 's/^VM-RESULT: ([0-9]+) passed.*/\1/')
    failed=$(echo "$result" | sed -E 's/.* ([0-9]+) failed(, [0-9]+ skipped)?$/\1/')
    if [ "$passed" -ne "$pass_lines" ] || [ "$failed" -ne "$fail_lines" ]; then
      say "$name: FAIL: '$result' disagrees with the $pass_lines PASS and $fail_lines FAIL lines received"
      failed=$((failed + 1))
    elif [ "$passed" -eq 0 ]; then
      say "$name: FAIL: no check passed"
      failed=$((failed + 1))
    elif [ "$failed" -eq 0 ] && [ "$exit_line" != "VM-EXIT: 0" ]; then
      say "$name: FAIL: the test program ended with '${exit_line:-no VM-EXIT line}'"
      failed=$((failed + 1))
    fi
  fi
  summaries+=("$name VM ($nodes nodes): $passed passed, $failed failed (${secs}s)")
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
}

#      name    nodes  cpus per node  distance matrix rows                        weights
run_vm 2node   2      "0/1"          "10,17/17,10"                               "3 1"
run_vm 4node   4      "0/1/2/3"      "10,16,32,41/16,10,27,36/32,27,10,14/41,36,14,10"  "3 1 2 2"

say "serial logs: $run_dir"
for s in "${summaries[@]}"; do say "$s"; done
[ "${#summaries[@]}" -gt 0 ] || { total_failed=$((total_failed + 1)); say "FAIL: no VM ran (NUMA_VM_ONLY='${NUMA_VM_ONLY:-}')"; }
echo "$total_passed passed, $total_failed failed"
if [ "$total_failed" -eq 0 ]; then exit 0; else exit 1; fi
