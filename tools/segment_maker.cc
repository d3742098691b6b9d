// Test helper for cli_test.sh: `segment_maker NAME keep` creates a segment with policy "local" and exits leaving
// it behind (stale); `segment_maker NAME hold` creates one, prints "ready", and holds it until stdin closes.
#include <cstdio>
#include <iostream>
#include <string>

#include "ipc/segment/segment.h"

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  ipc::SegmentOptions opts;
  opts.policy = ipc::numa::MemoryPolicy::local();
  ipc::Segment seg = ipc::Segment::create(argv[1], 1 << 16, opts);
  if (std::string(argv[2]) == "keep") {
    seg.keep();
    return 0;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}
