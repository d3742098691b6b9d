// ipc/pool/mpi/detail/transport.h (internal; use ipc/pool/mpi/pool.h): the one thread of a process that makes MPI
// calls. It initialises MPI (MPI_THREAD_FUNNELED: every call comes from this thread), sends what other threads
// queue, in the order queued (MPI_Isend: two ranks sending large messages to each other never wait for each
// other), hands every message it receives (MPI_Iprobe, MPI_Recv) to a Receiver, and finalises MPI.
//
// Threads: send(), wake() and stop() from any thread; the Receiver's calls run on the MPI thread, one at a time.
// Waiting: MPI has no wake-up a thread can block on beside a condition variable (a blocking MPI_Recv spins a
//   core), so the thread polls: without pause for 50 us after it last had work (and while a send is in flight),
//   then sleeping between polls, from 20 us doubling up to 200 us for 20 ms after its last work, then up to 1 ms
//   while a pool is open and 5 ms when none is; send() and wake() end a sleep at once. A message is thus seen
//   within microseconds on a busy rank, 200 us on one that worked lately, 1 ms on an idle one.
// Lifetime: one per process, made by ipc::mpi::init; MPI is finalised when the thread ends (after stop()).
// Errors: MPI's default error handler (MPI_ERRORS_ARE_FATAL) stays: an MPI failure, a rank that died among
//   them, ends the whole job with Open MPI's message. A message over 2 GiB - 1 bytes (MPI counts are int) is
//   InvalidArgument from send().
#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ipc::mpi::detail {

// What the MPI thread hands its work to.
class Receiver {
 public:
  virtual ~Receiver() = default;
  // A message from rank `source`.
  virtual void on_message(int source, int tag, std::vector<std::byte> bytes) = 0;
  // Once per round of the loop (after the messages of that round): work that waits on something other than a
  // message; true when it did some (the thread then keeps polling instead of sleeping).
  virtual bool on_round() { return false; }
  // Whether messages may come at any time (a pool is open): an idle thread then polls every 1 ms, else every 5 ms.
  virtual bool active() const { return false; }
};

struct Message {
  int dest;
  int tag;
  std::vector<std::byte> bytes;
};

class Transport {
 public:
  // Starts the MPI thread and returns once it has initialised MPI.
  Transport();
  // REQUIRES: the thread ended (join()), or the process is exiting.
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Starts handing messages to `receiver`, which outlives the thread. Once.
  void run(Receiver* receiver);
  // Queues a message; the MPI thread sends it after every message queued before it. Any thread. After stop(): dropped.
  void send(int dest, int tag, std::vector<std::byte> bytes);
  // Ends a sleep of the MPI thread: on_round has work. Any thread.
  void wake();
  // Queues `last`, then drops every later send(); the thread ends once every send completed, after finalising
  // MPI. Any thread, the MPI thread included.
  void stop(std::vector<Message> last = {});
  // Waits for the thread to end. Not from the MPI thread.
  void join();
  bool on_mpi_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  struct Mpi;  // the MPI handles (mpi.h stays in transport.cc)
  void loop();

  std::unique_ptr<Mpi> mpi_;
  int rank_ = -1, size_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;  // the MPI thread sleeps on it; also signals `rank_` set
  std::vector<Message> outbox_;
  Receiver* receiver_ = nullptr;
  bool woken_ = false, stopping_ = false;
  std::thread thread_;
};

}  // namespace ipc::mpi::detail
