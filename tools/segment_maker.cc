// Test helper for cli_test.sh:
//   segment_maker NAME keep     creates a segment with policy "local" and exits leaving it behind (stale);
//   segment_maker NAME hold     creates one, prints "ready", and holds it until stdin closes;
//   segment_maker NAME objects  creates a default-policy segment (kept) holding a queue "jobs" with 3 of its 8
//                               items, an Array "spread" interleaved over node 0, an Array "plain" with no policy
//                               of its own and a Lock "ledger"; takes the lock, prints "locked" and waits to be
//                               killed while holding it.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include "ipc/queue/queue.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/array.h"
#include "ipc/sync/lock.h"

namespace {

int make_objects(const char* name) {
  ipc::Segment seg = ipc::Segment::create(name, 1 << 20);
  seg.keep();
  auto jobs = ipc::Queue<uint64_t>::create(seg, "jobs", 8);
  for (uint64_t i = 0; i < 3; ++i) {
    if (jobs.try_put(i) != ipc::Outcome::kOk) return 1;
  }
  (void)ipc::Array<double>::create(seg, "spread", 1024, {ipc::numa::MemoryPolicy::interleave({0})});
  (void)ipc::Array<int32_t>::create(seg, "plain", 16);
  ipc::Lock& ledger = ipc::Lock::create(seg, "ledger");
  if (ledger.acquire() != ipc::Outcome::kOk) return 1;
  std::printf("locked\n");
  std::fflush(stdout);
  for (;;) pause();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const std::string mode = argv[2];
  if (mode == "objects") return make_objects(argv[1]);
  ipc::SegmentOptions opts;
  opts.policy = ipc::numa::MemoryPolicy::local();
  ipc::Segment seg = ipc::Segment::create(argv[1], 1 << 16, opts);
  if (mode == "keep") {
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
