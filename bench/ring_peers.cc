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

using BoostSpsc = boost::lockfree::spsc_queue<uint64_t, boost::lockfree::capacity<kCapacity>>;

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
struct TicketMpmc {
  struct alignas(64) Slot {
    std::atomic<uint64_t> turn{0};
    uint64_t value = 0;
  };
  alignas(64) std::atomic<uint64_t> tail{0};
  alignas(64) std::atomic<uint64_t> head{0};
  Slot slots[kCapacity];

  bool push(uint64_t v) {
    // relaxed: the slot's turn carries the synchronisation.
    const uint64_t t = tail.fetch_add(1, std::memory_order_relaxed);
    Slot& s = slots[t % kCapacity];
    // acquire: partner is the consumer's release store of the turn (its read of the value is done).
    while (s.turn.load(std::memory_order_acquire) != 2 * (t / kCapacity)) {
    }
    s.value = v;
    s.turn.store(2 * (t / kCapacity) + 1, std::memory_order_release);  // release: partner is pop()'s acquire
    return true;
  }
  bool pop(uint64_t& v) {
    const uint64_t h = head.fetch_add(1, std::memory_order_relaxed);  // relaxed: as in push()
    Slot& s = slots[h % kCapacity];
    while (s.turn.load(std::memory_order_acquire) != 2 * (h / kCapacity) + 1) {  // acquire: partner is push()
    }
    v = s.value;
    s.turn.store(2 * (h / kCapacity) + 2, std::memory_order_release);  // release: partner is push()'s acquire
    return true;
  }
};

// Uniform spinning put/get over both peers.
template <typename Ring>
void put(Ring& r, uint64_t v) {
  if constexpr (std::is_same_v<Ring, BoostSpsc>) {
    while (!r.push(v)) {
    }
  } else {
    r.push(v);
  }
}
template <typename Ring>
uint64_t get(Ring& r) {
  uint64_t v = 0;
  while (!r.pop(v)) {
  }
  return v;
}

// Runs `consume` and `produce` in two child processes, the producer held until both exist: `n` / seconds from
// the start signal to both children's exit, or -1.
double one_to_one(uint64_t n, const std::function<void()>& produce, const std::function<void()>& consume) {
  auto* start = static_cast<std::atomic<int>*>(map_shared(4096));
  new (start) std::atomic<int>(0);
  ipc::Process consumer = fork_child(consume);
  ipc::Process producer = fork_child([&] {
    while (start->load(std::memory_order_acquire) == 0) {
    }
    produce();
  });
  const double t0 = now_seconds();
  start->store(1, std::memory_order_release);
  const bool ok = wait_child(producer) & wait_child(consumer);
  const double t = now_seconds() - t0;
  free_shared(start, 4096);
  return ok ? static_cast<double>(n) / t : -1;
}

template <typename Ring>
double msgs_per_s(uint64_t n) {
  Shared<Ring> q;
  return one_to_one(
      n, [&] { for (uint64_t i = 0; i < n; ++i) put(*q.ring, i); },
      [&] {
        uint64_t sum = 0;
        for (uint64_t i = 0; i < n; ++i) sum += get(*q.ring);
        if (sum != n * (n - 1) / 2) throw std::runtime_error("ring peer lost or reordered values");
      });
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

double ring_peer_msgs_per_s(RingPeer peer, uint64_t messages) {
  return peer == RingPeer::kBoostSpsc ? msgs_per_s<BoostSpsc>(messages) : msgs_per_s<TicketMpmc>(messages);
}
double ring_peer_pair_ns(RingPeer peer, uint64_t pairs) {
  return peer == RingPeer::kBoostSpsc ? pair_ns<BoostSpsc>(pairs) : pair_ns<TicketMpmc>(pairs);
}
double ring_peer_rtt_ns(RingPeer peer, uint64_t round_trips) {
  return peer == RingPeer::kBoostSpsc ? rtt_ns<BoostSpsc>(round_trips) : rtt_ns<TicketMpmc>(round_trips);
}

double batched_ring_msgs_per_s(uint64_t n, unsigned batch) {
  Shared<BatchedRing> q;
  BatchedRing& r = *q.ring;
  return one_to_one(
      n,
      [&] {
        uint64_t tail = 0, head = 0;
        while (tail < n) {
          const uint64_t end = std::min<uint64_t>(n, tail + batch);
          // acquire: partner is the consumer's release store of head (its reads of those slots are done).
          while (end - head > kCapacity) head = r.head.load(std::memory_order_acquire);
          for (; tail < end; ++tail) r.slots[tail % kCapacity] = tail;
          r.tail.store(tail, std::memory_order_release);  // release: partner is the consumer's acquire load
        }
      },
      [&] {
        uint64_t head = 0, tail = 0, sum = 0;
        while (head < n) {
          // acquire: partner is the producer's release store of tail (the slots up to it are written).
          while (tail == head) tail = r.tail.load(std::memory_order_acquire);
          for (; head < tail; ++head) sum += r.slots[head % kCapacity];
          r.head.store(head, std::memory_order_release);  // release: partner is the producer's acquire load
        }
        if (sum != n * (n - 1) / 2) throw std::runtime_error("batched ring lost or reordered values");
      });
}

}  // namespace bench
