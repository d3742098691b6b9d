#include "bench/ring_peers.h"

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <algorithm>
#include <cstddef>
#include <functional>
#include <stdexcept>
#include <new>
#include <type_traits>

#include "bench/harness.h"
#include "bench/peers.h"

namespace bench {
namespace {

constexpr uint64_t kCapacity = 4096;  // as the SpscQueue rows
// The rings of the one-process rows: small enough that the largest (the ticket ring's 64-byte slots, 16 KiB) fits
// in L1d beside the others, as ours_pair_ns() in queue_bench.cc does for our queues.
constexpr uint64_t kL1Capacity = 256;
static_assert(kL1Capacity == kPairRingSlots);

template <uint64_t Capacity>
using BoostSpscOf = boost::lockfree::spsc_queue<uint64_t, boost::lockfree::capacity<Capacity>>;
using BoostSpsc = BoostSpscOf<kCapacity>;
template <typename Ring>
constexpr bool kIsBoostSpsc = std::is_same_v<Ring, BoostSpsc> || std::is_same_v<Ring, BoostSpscOf<kL1Capacity>>;

// A ring of one type placed in its own shared mapping, built before the fork.
template <typename Ring>
struct Shared {
  Shared() : mem(map_shared(sizeof(Ring))), ring(new (mem) Ring()) {}
  ~Shared() {
    ring->~Ring();
    free_shared(mem, sizeof(Ring));
  }
  void* mem;
  Ring* ring;
};

// The ticket MPMC ring: position t goes to slot t % capacity on lap t / capacity; a slot's turn is 2 * lap while
// free for that lap and 2 * lap + 1 once written. One fetch_add claims a position; the producer (consumer) then
// waits for its slot's turn. Blocking only (a claimed position must be served), as rigtorp's push/pop.
template <uint64_t Capacity>
struct TicketMpmcOf {
  struct alignas(64) Slot {
    std::atomic<uint64_t> turn{0};
    uint64_t value = 0;
  };
  alignas(64) std::atomic<uint64_t> tail{0};
  alignas(64) std::atomic<uint64_t> head{0};
  Slot slots[Capacity];

  bool push(uint64_t v) {
    // relaxed: the slot's turn carries the synchronisation.
    const uint64_t t = tail.fetch_add(1, std::memory_order_relaxed);
    Slot& s = slots[t % Capacity];
    // acquire: partner is the consumer's release store of the turn (its read of the value is done).
    while (s.turn.load(std::memory_order_acquire) != 2 * (t / Capacity)) {
    }
    s.value = v;
    s.turn.store(2 * (t / Capacity) + 1, std::memory_order_release);  // release: partner is pop()'s acquire
    return true;
  }
  bool pop(uint64_t& v) {
    const uint64_t h = head.fetch_add(1, std::memory_order_relaxed);  // relaxed: as in push()
    Slot& s = slots[h % Capacity];
    while (s.turn.load(std::memory_order_acquire) != 2 * (h / Capacity) + 1) {  // acquire: partner is push()
    }
    v = s.value;
    s.turn.store(2 * (h / Capacity) + 2, std::memory_order_release);  // release: partner is push()'s acquire
    return true;
  }
};
using TicketMpmc = TicketMpmcOf<kCapacity>;

// Uniform spinning put/get over both peers; each adds its failed tries to `spins`.
template <typename Ring>
void put(Ring& r, uint64_t v, uint64_t& spins) {
  if constexpr (kIsBoostSpsc<Ring>) {
    while (!r.push(v)) ++spins;
  } else {
    r.push(v);
  }
}
template <typename Ring>
uint64_t get(Ring& r, uint64_t& spins) {
  uint64_t v = 0;
  while (!r.pop(v)) ++spins;
  return v;
}
template <typename Ring>
void put(Ring& r, uint64_t v) {
  uint64_t spins = 0;
  put(r, v, spins);
}
template <typename Ring>
uint64_t get(Ring& r) {
  uint64_t spins = 0;
  return get(r, spins);
}

}  // namespace

double spinning_one_to_one(uint64_t n, const std::function<uint64_t()>& produce, const std::function<uint64_t()>& consume,
                  SpinCounts* counts) {
  // The start flag and each child's count on lines of their own, so that the counts do not disturb the run.
  struct alignas(64) Line {
    std::atomic<uint64_t> word{0};
  };
  auto* lines = static_cast<Line*>(map_shared(4096));
  Line& start = *new (&lines[0]) Line();
  Line& fulls = *new (&lines[1]) Line();
  Line& empties = *new (&lines[2]) Line();
  // relaxed: each count is read after its writer exited (join orders it).
  ipc::Process consumer = fork_child([&] { empties.word.store(consume(), std::memory_order_relaxed); });
  ipc::Process producer = fork_child([&] {
    while (start.word.load(std::memory_order_acquire) == 0) {  // acquire: partner is the release store below
    }
    fulls.word.store(produce(), std::memory_order_relaxed);
  });
  const double t0 = now_seconds();
  start.word.store(1, std::memory_order_release);
  const bool ok = wait_child(producer) & wait_child(consumer);
  const double t = now_seconds() - t0;
  if (counts) {
    counts->full_per_msg = static_cast<double>(fulls.word.load(std::memory_order_relaxed)) / static_cast<double>(n);
    counts->empty_per_msg = static_cast<double>(empties.word.load(std::memory_order_relaxed)) / static_cast<double>(n);
  }
  free_shared(lines, 4096);
  return ok ? static_cast<double>(n) / t : -1;
}

namespace {

template <typename Ring>
double msgs_per_s(uint64_t n, SpinCounts* counts) {
  Shared<Ring> q;
  return spinning_one_to_one(
      n,
      [&] {
        uint64_t spins = 0;
        for (uint64_t i = 0; i < n; ++i) put(*q.ring, i, spins);
        return spins;
      },
      [&] {
        uint64_t sum = 0, spins = 0;
        for (uint64_t i = 0; i < n; ++i) sum += get(*q.ring, spins);
        if (sum != n * (n - 1) / 2) throw std::runtime_error("ring peer lost or reordered values");
        return spins;
      },
      counts);
}

template <typename Ring>
double pair_ns(uint64_t n) {
  Shared<Ring> q;
  uint64_t sum = 0;
  const double t0 = now_seconds();
  for (uint64_t i = 0; i < n; ++i) {
    put(*q.ring, i);
    sum += get(*q.ring);
  }
  const double t = now_seconds() - t0;
  return sum == n * (n - 1) / 2 ? t * 1e9 / static_cast<double>(n) : -1;
}

template <typename Ring>
double rtt_ns(uint64_t n) {
  Shared<Ring> ping, pong;
  ipc::Process child = fork_child([&] {
    for (uint64_t i = 0; i < n; ++i) put(*pong.ring, get(*ping.ring));
  });
  uint64_t i = 0;
  const double ns = round_trip_ns(n, 0, [&] {
    put(*ping.ring, i);
    return get(*pong.ring) == i++;
  });
  return wait_child(child) ? ns : -1;
}

// The batched ring: tail and head on their own lines, each side caching the other's index.
struct BatchedRing {
  alignas(64) std::atomic<uint64_t> tail{0};
  alignas(64) std::atomic<uint64_t> head{0};
  alignas(64) uint64_t slots[kCapacity];
};

}  // namespace

double ring_peer_msgs_per_s(RingPeer peer, uint64_t messages, SpinCounts* counts) {
  return peer == RingPeer::kBoostSpsc ? msgs_per_s<BoostSpsc>(messages, counts)
                                      : msgs_per_s<TicketMpmc>(messages, counts);
}
double ring_peer_pair_ns(RingPeer peer, uint64_t pairs) {
  return peer == RingPeer::kBoostSpsc ? pair_ns<BoostSpscOf<kL1Capacity>>(pairs)
                                      : pair_ns<TicketMpmcOf<kL1Capacity>>(pairs);
}
double ring_peer_rtt_ns(RingPeer peer, uint64_t round_trips) {
  return peer == RingPeer::kBoostSpsc ? rtt_ns<BoostSpsc>(round_trips) : rtt_ns<TicketMpmc>(round_trips);
}

double batched_ring_msgs_per_s(uint64_t n, unsigned batch, SpinCounts* counts) {
  Shared<BatchedRing> q;
  BatchedRing& r = *q.ring;
  return spinning_one_to_one(
      n,
      [&] {
        uint64_t tail = 0, head = 0, fulls = 0;
        while (tail < n) {
          const uint64_t end = std::min<uint64_t>(n, tail + batch);
          if (end - head > kCapacity) {
            // acquire: partner is the consumer's release store of head (its reads of those slots are done).
            while (end - (head = r.head.load(std::memory_order_acquire)) > kCapacity) ++fulls;
          }
          for (; tail < end; ++tail) r.slots[tail % kCapacity] = tail;
          r.tail.store(tail, std::memory_order_release);  // release: partner is the consumer's acquire load
        }
        return fulls;
      },
      [&] {
        uint64_t head = 0, tail = 0, sum = 0, empties = 0;
        while (head < n) {
          if (tail == head) {
            // acquire: partner is the producer's release store of tail (the slots up to it are written).
            while ((tail = r.tail.load(std::memory_order_acquire)) == head) ++empties;
          }
          // At most `batch` values per publication of head, as the producer: with batch 1 this is the
          // per-message ring (rigtorp's pop), not a consumer that drains all it finds and publishes once.
          const uint64_t end = std::min<uint64_t>(tail, head + batch);
          for (; head < end; ++head) sum += r.slots[head % kCapacity];
          r.head.store(head, std::memory_order_release);  // release: partner is the producer's acquire load
        }
        if (sum != n * (n - 1) / 2) throw std::runtime_error("batched ring lost or reordered values");
        return empties;
      },
      counts);
}

}  // namespace bench
