// bench/ring_peers.h: lock-free ring peers for the queue rows, placed in MAP_SHARED memory and driven by fork()ed
// processes exactly as our queues are (../shared/BENCHMARKS.md):
//   - Boost.Lockfree spsc_queue with a compile-time capacity (its storage is inline: no heap pointer, so it can
//     live in shared memory): the best SPSC ring available as a Debian package;
//   - a ticket-per-slot MPMC ring (the design of rigtorp's MPMCQueue: one fetch_add on the index, then a store of
//     the slot's turn), written here;
//   - a minimal SPSC ring that publishes its index once per batch: the ceiling for SPSC throughput.
// None of them survives a killed process (a producer killed mid-push wedges the ticket ring, a killed consumer
// loses what it took without a trace): they show the price of what our queues add.
//
// Threads: call from the benchmark's main thread. Processes: children exit before return.
// Errors: a child that fails makes the figure negative ("n/a").
#pragma once

#include <cstdint>

namespace bench {

enum class RingPeer { kBoostSpsc, kTicketMpmc };

// 8-byte values, 1 producer process -> 1 consumer process, both spinning on full/empty: msgs/s.
double ring_peer_msgs_per_s(RingPeer peer, uint64_t messages);
// One put and one get in one process, the ring in L1 (the cost of the calls themselves): ns per pair.
double ring_peer_pair_ns(RingPeer peer, uint64_t pairs);
// Round trip through two rings between two processes, both polling: ns.
double ring_peer_rtt_ns(RingPeer peer, uint64_t round_trips);

// The minimal SPSC ring: 8-byte values, 1 -> 1 process, the producer publishes its index after every `batch`
// values and the consumer after every batch it takes: msgs/s.
double batched_ring_msgs_per_s(uint64_t messages, unsigned batch);

}  // namespace bench
