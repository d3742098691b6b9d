#!/usr/bin/env bash
# Installs numa_mp (the //:dist tree, as tools/install.sh does) into a temporary prefix, then builds programs from
# outside the Bazel tree against it with pkg-config and with CMake, shared and static, and runs them. The prefix
# is moved after unpacking to show that the .pc and CMake files are relocatable.
set -euo pipefail

dist="$1"
src_dir="$(cd "$(dirname "$2")" && pwd)"  # tests/install (any file of it)
work="${TEST_TMPDIR:-$(mktemp -d)}/install test"    # a space in the path on purpose
rm -rf "$work"
mkdir -p "$work/unpacked" "$work/build"
tar -xf "$dist" -C "$work/unpacked"
mv "$work/unpacked" "$work/prefix"
prefix="$work/prefix"

fail() { echo "install_test: FAILED: $*" >&2; exit 1; }
run() {  # run NAME PROGRAM: runs it and checks its exit status
  local name="$1"; shift
  if ! out="$("$@" 2>&1)"; then fail "$name exited non-zero: $out"; fi
  echo "$name: $out"
}

for f in include/ipc/pool/pool.h include/manager/manager.capnp.h lib/libnuma_mp.a lib/libnuma_mp.so \
         lib/libnuma_mp_manager.a lib/libnuma_mp_manager.so lib/pkgconfig/numa_mp.pc \
         lib/cmake/numa_mp/numa_mpConfig.cmake lib/cmake/numa_mp/numa_mpConfigVersion.cmake; do
  [[ -f "$prefix/$f" ]] || fail "the installed tree lacks $f"
done

# Under `--config=asan` the libraries are instrumented: the programs built against them must be too.
san=""
undefined_symbols="$(nm --undefined-only "$prefix/lib/libnuma_mp.a" 2>/dev/null)"
if [[ "$undefined_symbols" == *__asan_* ]]; then san="-fsanitize=address,undefined"; fi
if [[ "$undefined_symbols" == *__tsan_* ]]; then san="-fsanitize=thread"; fi

# pkg-config, shared: -lnuma_mp resolves to the .so; the rpath lets the program find it.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
[[ "$(pkg-config --modversion numa_mp)" == 0.1.0 ]] || fail "pkg-config --modversion numa_mp"
cd "$work/build"
# pkg-config prints paths with the space escaped, as a shell needs them: let the shell split them.
eval "g++ $san -O1 -o pc_shared '$src_dir/consumer.cc' $(pkg-config --cflags --libs numa_mp) -Wl,-rpath,'$prefix/lib'"
readelf -d pc_shared | grep -q 'libnuma_mp.so' || fail "pc_shared does not load libnuma_mp.so"
run pkg-config-shared ./pc_shared
eval "g++ $san -O1 -o pc_manager '$src_dir/manager_consumer.cc' $(pkg-config --cflags --libs numa_mp_manager) \
      -Wl,-rpath,'$prefix/lib'"
run pkg-config-manager ./pc_manager

# pkg-config, static: the archive in place of -lnuma_mp.
eval "g++ $san -O1 -o pc_static '$src_dir/consumer.cc' $(pkg-config --cflags numa_mp) '$prefix/lib/libnuma_mp.a' \
      $(pkg-config --libs numa_mp | sed 's/-lnuma_mp //')"
if readelf -d pc_static | grep -q 'libnuma_mp'; then fail "pc_static still loads a numa_mp shared library"; fi
run pkg-config-static ./pc_static

# CMake: find_package(numa_mp) and its imported targets.
cmake -S "$src_dir" -B "$work/build/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" >cmake.log 2>&1 \
  || { cat cmake.log >&2; fail "cmake configure"; }
cmake --build "$work/build/cmake" -j 2 >build.log 2>&1 || { cat build.log >&2; fail "cmake build"; }
for program in consumer_shared consumer_static manager_shared manager_static; do
  run "cmake-$program" "$work/build/cmake/$program"
done
echo "install_test: PASSED"
