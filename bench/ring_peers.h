// bench/ring_peers.h: lock-free ring peers for the queue rows, placed in MAP_SHARED memory and driven by fork()ed
// processes exactly as our queues are (../shared/BENCHMARKS.md):
//   - Boost.Lockfree spsc_queue with a compile-time capacity (its storage is inline: no heap pointer, so it can
//     live in shared memory): the best SPSC ring available as a Debian package;
//   - a ticket-per-slot MPMC ring (the design of rigtorp's MPMCQueue: one fetch_add on the index, then a store of
//     the slot's turn), written here;
//   - a minimal SPSC ring (rigtorp's design: each side caches the other's index) whose producer and consumer each
//     publish their index once per `batch` values (1: every message): the ceiling for SPSC throughput.
// None of them survives a killed process (a producer killed mid-push wedges the ticket ring, a killed consumer
// loses what it took without a trace): they show the price of what our queues add.
//
// Threads: call from the benchmark's main thread. Processes: children exit before return.
// Errors: a child that fails makes the figure negative ("n/a").
#pragma once

#include <cstdint>
#include <functional>

namespace bench {

enum class RingPeer { kBoostSpsc, kTicketMpmc };

// Where the time of a spinning 1 -> 1 run went, per message: how often the producer found the ring full and the
// consumer found it empty (a failed push/pop, or a refresh of the cached index that found nothing new). Near 0:
// both sides streamed; far above 1: one side spun while the other was off its CPU (the scheduler's figure).
struct SpinCounts {
  double full_per_msg = 0;
  double empty_per_msg = 0;
};

// 8-byte values, 1 producer process -> 1 consumer process, both spinning on full/empty, no pause: msgs/s.
// `counts`, when given, receives the run's SpinCounts (kBoostSpsc only; the ticket ring spins inside its calls).
double ring_peer_msgs_per_s(RingPeer peer, uint64_t messages, SpinCounts* counts = nullptr);
// One put and one get in one process, the ring in L1 (the cost of the calls themselves): ns per pair. The ring
// has kPairRingSlots slots, as our queues in the same rows.
inline constexpr uint64_t kPairRingSlots = 256;
double ring_peer_pair_ns(RingPeer peer, uint64_t pairs);
// Round trip through two rings between two processes, both polling: ns.
double ring_peer_rtt_ns(RingPeer peer, uint64_t round_trips);

// Runs `consume` and `produce` (each returning how often it found the ring empty / full) in two fork()ed
// processes, the producer held until both exist: `messages` / seconds from the start signal to both exits, or -1
// when a child failed. `counts`, when given, receives the two counts per message. Every 1 -> 1 spinning row uses it.
double spinning_one_to_one(uint64_t messages, const std::function<uint64_t()>& produce,
                           const std::function<uint64_t()>& consume, SpinCounts* counts);

// The minimal SPSC ring: 8-byte values, 1 -> 1 process, the producer publishes its index after every `batch`
// values, the consumer after every `batch` values it takes (or fewer, when fewer were there): msgs/s.
double batched_ring_msgs_per_s(uint64_t messages, unsigned batch, SpinCounts* counts = nullptr);

}  // namespace bench
