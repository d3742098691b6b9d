// examples/shared_counter.cc: worker processes increment shared counters in a named segment, one lock-free and
// one under a robust Lock that also guards a two-field record; one worker is killed while holding the lock, and
// the next worker to take it sees "owner died", repairs the record and carries on.
//
//   ./bazelw run //examples:shared_counter -- [--workers N] [--increments N]
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "examples/args.h"
#include "ipc/base/process.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/value.h"
#include "ipc/sync/event.h"
#include "ipc/sync/lock.h"

namespace {

// Guarded by the lock "ledger_lock": `entries` counts the updates and `total` sums them; they must agree.
struct Ledger {
  int64_t entries = 0;
  int64_t total = 0;
};

void add_to_ledger(ipc::Lock& lock, Ledger& ledger, int64_t amount) {
  ipc::LockGuard guard(lock);
  if (guard.owner_died()) {
    // A worker died between the two writes below: make the record consistent again before using it.
    std::printf("[%d] previous owner died; repairing ledger (entries %lld, total %lld)\n", getpid(),
                static_cast<long long>(ledger.entries), static_cast<long long>(ledger.total));
    ledger.total = ledger.entries;
    guard.mark_consistent();
  }
  ++ledger.entries;
  ledger.total += amount;
}

}  // namespace

int main(int argc, char** argv) {
  const examples::Args args(argc, argv, {{"workers", 4}, {"increments", 100000}});
  const int workers = static_cast<int>(args.get("workers"));
  const int increments = static_cast<int>(args.get("increments"));
  const std::string name = "shared_counter_example_" + std::to_string(getpid());

  // The creator owns the name: the segment is unlinked when `segment` goes out of scope.
  auto segment = ipc::Segment::create(name, 1 << 20);
  auto& hits = ipc::Value<int64_t>::create(segment, "hits");
  auto& ledger_lock = ipc::Lock::create(segment, "ledger_lock");
  auto& record = segment.construct<Ledger>("record");
  auto& holding = ipc::Event::create(segment, "victim_holds_lock");

  // A victim that takes the lock, half-updates the record, and is killed there.
  ipc::Process victim = ipc::Process::start([&] {
    auto mine = ipc::Segment::open(name);
    auto& lock = ipc::Lock::open(mine, "ledger_lock");
    auto& rec = *mine.find<Ledger>("record");
    if (lock.acquire() != ipc::Outcome::kOk) return 1;
    ++rec.entries;  // ... and dies before updating rec.total
    ipc::Event::open(mine, "victim_holds_lock").set();
    for (;;) pause();
  }, {.name = "victim"});
  if (holding.wait(std::chrono::seconds(30)) != ipc::Outcome::kOk) return 1;
  victim.kill();
  (void)victim.join();
  std::printf("killed worker %d while it held the lock\n", victim.pid());

  std::vector<ipc::Process> kids;
  for (int w = 0; w < workers; ++w) {
    kids.push_back(ipc::Process::start([&] {
      // A child opens everything by name, as an unrelated process would.
      auto mine = ipc::Segment::open(name);
      auto& my_hits = ipc::Value<int64_t>::open(mine, "hits");
      auto& lock = ipc::Lock::open(mine, "ledger_lock");
      auto& rec = *mine.find<Ledger>("record");
      for (int i = 0; i < increments; ++i) {
        my_hits.fetch_add(1);  // lock-free
        if (i % 100 == 0) add_to_ledger(lock, rec, 1);
      }
    }));
  }
  int failed = 0;
  for (ipc::Process& k : kids) failed += k.join() == 0 ? 0 : 1;

  const int64_t expected_hits = int64_t{workers} * increments;
  const int64_t expected_entries = int64_t{workers} * ((increments + 99) / 100) + 1;  // + the victim's entry
  std::printf("hits %lld (expected %lld); ledger entries %lld, total %lld (expected %lld)\n",
              static_cast<long long>(hits.load()), static_cast<long long>(expected_hits),
              static_cast<long long>(record.entries), static_cast<long long>(record.total),
              static_cast<long long>(expected_entries));
  ipc::LockGuard check(ledger_lock);
  return failed == 0 && hits.load() == expected_hits && record.entries == expected_entries &&
                 record.total == expected_entries
             ? 0
             : 1;
}
