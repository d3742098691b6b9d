#!/usr/bin/env bash
# tools/install.sh PREFIX: builds numa_mp with Bazel and installs headers, libnuma_mp.{a,so},
# libnuma_mp_manager.{a,so}, pkg-config files (PREFIX/lib/pkgconfig) and a CMake package (PREFIX/lib/cmake/numa_mp)
# under PREFIX. The installed tree is relocatable. See README, "Using it without Bazel".
set -euo pipefail
if [[ $# -ne 1 || "$1" == -h || "$1" == --help ]]; then
  echo "usage: tools/install.sh PREFIX     (for example: tools/install.sh \$HOME/.local)"
  [[ $# -eq 1 ]] && exit 0 || exit 2
fi
prefix="$1"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./bazelw build //:dist
mkdir -p "$prefix"
tar -xf bazel-bin/dist.tar -C "$prefix" --no-same-owner
echo "installed numa_mp 0.1.0 into $prefix"
echo "  pkg-config: PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs numa_mp"
echo "  CMake:      -DCMAKE_PREFIX_PATH=$prefix, then find_package(numa_mp) and numa_mp::numa_mp"
