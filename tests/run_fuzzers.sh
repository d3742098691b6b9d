#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz.bzl) with clang and runs each for a bounded time from a copy of its
# checked-in corpus (the corpus in the tree is never modified). docs/fuzzing.md explains the targets.
#
#   bash tests/run_fuzzers.sh [--seconds N] [--rss-limit-mb N] [--keep DIR] [TARGET...]
#     --seconds N       fuzzing time per target (default 40)
#     --rss-limit-mb N  memory limit of a target (default 2048)
#     --keep DIR        keep the grown corpora and any crash reproducers under DIR/<target>/ (default: a temp dir
#                       that is removed unless a target failed)
#     TARGET            labels such as //ipc/numa:memory_policy_fuzz (default: every target tagged "fuzz")
#
# The build runs in its own Bazel output base ($NUMA_MP_FUZZ_OUTPUT_BASE, default under ~/.cache), because
# --config=fuzz switches Bazel's auto-configured C++ toolchain to clang: sharing the usual output base would throw
# away the gcc build of every other command. Needs clang and libFuzzer (Debian: clang, libclang-rt-14-dev).
# Prints "<target>: 1 passed, 0 failed (T s)" or "... 0 passed, 1 failed ..." per target, then
# "fuzz: N passed, N failed (T s)"; exits non-zero when a target found a failure or did not build.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

seconds=40
rss_limit_mb=2048
keep=""
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --rss-limit-mb) rss_limit_mb=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run_fuzzers.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

t0=$SECONDS
output_base=${NUMA_MP_FUZZ_OUTPUT_BASE:-${XDG_CACHE_HOME:-$HOME/.cache}/numa_mp-fuzz/$(pwd -P | md5sum | cut -c1-12)}
mkdir -p "$output_base"
bazel_fuzz=(./bazelw --output_base="$output_base")

if [ "${#targets[@]}" -eq 0 ]; then
  # Every top folder but the bazel-* links: in this output base, //... would also walk the usual output base's
  # convenience links (bazel-<workspace>), whose packages do not load.
  universe=""
  for d in */; do
    d=${d%/}
    [[ "$d" == bazel-* ]] && continue
    [ -n "$(find "$d" -name BUILD -print -quit)" ] && universe+="${universe:+ + }//$d/..."
  done
  mapfile -t targets < <("${bazel_fuzz[@]}" query "attr(tags, '\bfuzz\b', kind(cc_binary, $universe))" 2>/dev/null)
  if [ "${#targets[@]}" -eq 0 ]; then
    echo "run_fuzzers.sh: bazel query found no target tagged fuzz"
    echo "fuzz: 0 passed, 1 failed ($((SECONDS - t0)) s)"
    exit 1
  fi
fi

echo "=== building ${#targets[@]} fuzz targets with clang (output base $output_base)"
# gold warns about every ASan helper symbol it cannot export when linking a fuzzer: noise, left out.
"${bazel_fuzz[@]}" build --config=fuzz --keep_going -- "${targets[@]}" 2>&1 | grep -v "Cannot export local symbol"
build_rc=${PIPESTATUS[0]}

bin=$("${bazel_fuzz[@]}" info --config=fuzz bazel-bin 2>/dev/null)
work=${keep:-$(mktemp -d /tmp/numa_mp-fuzz.XXXXXX)}
passed=0
failed=0
for label in "${targets[@]}"; do
  pkg=${label#//}; pkg=${pkg%%:*}
  name=${label##*:}
  binary=$bin/$pkg/$name
  dir="$work/$name"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  started=$SECONDS
  if [ ! -x "$binary" ]; then
    echo "$label: did not build"
    echo "$label: 0 passed, 1 failed ($((SECONDS - started)) s)"
    failed=$((failed + 1))
    continue
  fi
  cp -r "$pkg/corpus/$name/." "$dir/corpus/"
  echo "=== $label: fuzzing for $seconds s from $(ls "$dir/corpus" | wc -l) corpus files"
  # -timeout: one input running this long is a hang. The whole log stays in $dir/log; a failure prints its end.
  # A target's dictionary of tokens, if it has one, sits beside its corpus directory: <package>/<target>.dict.
  dict=()
  [ -f "$pkg/$name.dict" ] && dict=(-dict="$pkg/$name.dict")
  # A fixed seed (FUZZ_SEED, 1 by default) makes a CI run repeatable: a finding replays with the same seed. Give
  # another seed to explore further by hand (docs/fuzzing.md).
  "$binary" -seed="${FUZZ_SEED:-1}" -max_total_time="$seconds" -rss_limit_mb="$rss_limit_mb" -timeout=20 \
    -print_final_stats=1 \
    "${dict[@]+"${dict[@]}"}" -artifact_prefix="$dir/artifacts/" "$dir/corpus" >"$dir/log" 2>&1
  rc=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "$dir/log" | tr '\n' ' '
  echo
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "$label: 1 passed, 0 failed ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1))
    keep=${keep:-$work}
    tail -n 60 "$dir/log"
    echo "$label: FAILED (exit $rc); reproducer(s): $(ls "$dir"/artifacts/* 2>/dev/null | tr '\n' ' ')"
    echo "$label: 0 passed, 1 failed ($((SECONDS - started)) s)"
  fi
done
if [ "$build_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "run_fuzzers.sh: the build failed (exit $build_rc)"
  failed=$((failed + 1))
fi
if [ -z "$keep" ]; then rm -rf "$work"; else echo "corpora, logs and reproducers: $work"; fi
echo "fuzz: $passed passed, $failed failed ($((SECONDS - t0)) s)"
[ "$failed" -eq 0 ]
