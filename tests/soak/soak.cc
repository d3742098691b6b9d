#include "tests/soak/soak.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ipc/pipe/connection.h"
#include "ipc/pool/pool.h"
#include "ipc/queue/queue.h"
#include "ipc/segment/segment.h"
#include "ipc/sync/lock.h"
#include "manager/client.h"
#include "manager/server.h"
#include "tests/support/test_support.h"

namespace ipc::soak {
namespace {

using namespace std::chrono_literals;
using test::ForkedChild;

constexpr int kProducers = 2;
constexpr uint32_t kMaxSeq = 1 << 15;  // messages per producer and round, at most
constexpr int kPoolTasks = 12;
// A process that does not finish this long after it was told to stop is hung (generous: sanitizers, 2 busy cores).
constexpr auto kDeadline = test::patience(std::chrono::seconds(60));

uint64_t checksum(uint64_t round_key, uint32_t producer, uint32_t seq) {
  uint64_t x = round_key ^ (uint64_t{producer} << 40) ^ seq;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

struct Message {
  uint32_t producer;
  uint32_t seq;
  uint64_t check;
};

// Counters the round's processes share (an anonymous mapping made before the forks). Relaxed everywhere: the parent
// reads them only after the writers were reaped (or killed and reaped), which orders every write before the read.
struct Ledger {
  std::atomic<uint32_t> stop;
  std::atomic<uint32_t> queue_committed[kProducers];  // puts that returned kOk
  std::atomic<uint32_t> queue_received[kProducers][kMaxSeq];
  std::atomic<uint32_t> queue_corrupt;
  std::atomic<uint32_t> pipe_committed;  // sends that returned kOk
  std::atomic<uint32_t> pipe_received;   // in order and intact
  std::atomic<uint32_t> pipe_bad;        // out of order or corrupt
  std::atomic<uint32_t> lock_rounds;
  std::atomic<uint32_t> lock_repairs;
  std::atomic<uint32_t> lock_inconsistent;  // a holder found the pair unequal without being told the owner died
  std::atomic<uint32_t> manager_committed;
  std::atomic<uint32_t> manager_received[kMaxSeq];
  std::atomic<uint32_t> manager_corrupt;
};

// What the Lock guards: equal whenever nobody is in the middle of an update.
struct Pair {
  uint64_t a = 0;
  uint64_t b = 0;
};

std::string pipe_payload(uint64_t round_key, uint32_t seq, size_t bytes) {
  std::string s(8 + bytes, '\0');
  std::memcpy(s.data(), &seq, 4);
  const uint32_t check = static_cast<uint32_t>(checksum(round_key, 7, seq));
  std::memcpy(s.data() + 4, &check, 4);
  for (size_t i = 0; i < bytes; ++i) s[8 + i] = static_cast<char>((seq + i) * 131);
  return s;
}

bool pipe_payload_ok(uint64_t round_key, const std::string& s, uint32_t expected_seq) {
  if (s.size() < 8) return false;
  uint32_t seq, check;
  std::memcpy(&seq, s.data(), 4);
  std::memcpy(&check, s.data() + 4, 4);
  return seq == expected_seq && s == pipe_payload(round_key, seq, s.size() - 8) &&
         check == static_cast<uint32_t>(checksum(round_key, 7, seq));
}

// Manager items: an int64 holding the sequence number and a checksum of it.
int64_t manager_item(uint64_t round_key, uint32_t seq) {
  return static_cast<int64_t>((uint64_t{seq} << 32) | (checksum(round_key, 9, seq) & 0xffffffffu));
}

// Pool tasks: busy for `micros`, then a value the parent can check.
int64_t pool_task(int64_t x, int micros) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(micros);
  while (std::chrono::steady_clock::now() < until) {
  }
  return x * 7 + 1;
}

enum class Role { kProducer, kConsumer, kLocker, kPipeSender, kPipeReceiver, kManagerProducer, kManagerConsumer };

const char* role_name(Role r) {
  switch (r) {
    case Role::kProducer: return "queue producer";
    case Role::kConsumer: return "queue consumer";
    case Role::kLocker: return "locker";
    case Role::kPipeSender: return "pipe sender";
    case Role::kPipeReceiver: return "pipe receiver";
    case Role::kManagerProducer: return "manager producer";
    case Role::kManagerConsumer: return "manager consumer";
  }
  return "?";
}

struct Member {
  Role role;
  int index;
  std::unique_ptr<ForkedChild> child;
  bool killed = false;
  std::string label() const {
    return std::string(role_name(role)) + " " + std::to_string(index) + " (pid " + std::to_string(child->pid()) + ")";
  }
};

class Round {
 public:
  Round(uint64_t number, uint64_t seed, std::mt19937_64& rng, Pool& pool, const manager::ServerProcess& server,
        manager::Client& client, const std::string& prefix, Report& report)
      : number_(number), key_(seed * 1000003 + number), rng_(rng), pool_(pool), server_(server), client_(client),
        report_(report), ledger_mapping_(sizeof(Ledger)), ledger_(*ledger_mapping_.as<Ledger>()),
        segment_(Segment::create(prefix + "-r" + std::to_string(number), 1 << 20)),
        queue_(Queue<Message>::create(segment_, "queue", 64)),
        lock_(Lock::create(segment_, "lock")),
        pair_(segment_.construct<Pair>("pair")),
        manager_queue_name_(prefix + "-q" + std::to_string(number)) {}

  void run(std::ostream& log) {
    // The pipe's two processes first, so that no other process holds a copy of an end: the receiver sees the end of
    // the stream as soon as the sender is gone. (Pool workers come from the fork server and inherit nothing.)
    PipeOptions pipe_options;
    pipe_options.duplex = false;
    pipe_options.ring_bytes = 4096;  // messages of up to 3 KiB pass in parts
    auto [receive_end, send_end] = Pipe(pipe_options);
    start(Role::kPipeSender, 0, [&] {
      receive_end.close();
      return pipe_sender(send_end);
    });
    start(Role::kPipeReceiver, 0, [&] {
      send_end.close();
      return pipe_receiver(receive_end);
    });
    receive_end.close();
    send_end.close();
    manager::QueueProxy manager_queue = client_.queue(manager_queue_name_);
    for (int p = 0; p < kProducers; ++p) start(Role::kProducer, p, [&, p] { return producer(p); });
    for (int c = 0; c < 2; ++c) start(Role::kConsumer, c, [&] { return consumer(); });
    for (int l = 0; l < 2; ++l) start(Role::kLocker, l, [&] { return locker(); });
    start(Role::kManagerProducer, 0, [&] { return manager_producer(); });
    start(Role::kManagerConsumer, 0, [&] { return manager_consumer(); });

    std::vector<std::pair<int64_t, Future<int64_t>>> tasks;
    for (int i = 0; i < kPoolTasks; ++i) {
      const int64_t x = static_cast<int64_t>(number_ * 100 + i);
      tasks.emplace_back(x, pool_.apply_async(pool_task, x, static_cast<int>(rng_() % 20000)));
    }

    // The kills, at random moments of a round of 0.3 to 1 s.
    const auto round_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(300 + rng_() % 700);
    const int kills = 1 + static_cast<int>(rng_() % 3);
    std::set<int> killed_workers;
    for (int k = 0; k < kills; ++k) {
      const auto now = std::chrono::steady_clock::now();
      if (now < round_end) {
        const auto left = std::chrono::duration_cast<std::chrono::microseconds>(round_end - now).count();
        std::this_thread::sleep_for(std::chrono::microseconds(rng_() % (left / (kills - k) + 1)));
      }
      if (rng_() % 4 == 0) {
        const auto pids = pool_.worker_pids();
        if (!pids.empty()) {
          const int pid = pids[rng_() % pids.size()];
          if (::kill(pid, SIGKILL) == 0) {
            killed_workers.insert(pid);
            ++report_.kills;
          }
          continue;
        }
      }
      Member& victim = members_[rng_() % members_.size()];
      if (victim.killed) continue;
      victim.child->kill(SIGKILL);
      victim.killed = true;
      ++report_.kills;
    }
    std::this_thread::sleep_until(round_end);
    ledger_.stop.store(1, std::memory_order_relaxed);

    // Stop in order: producers first, then close what the consumers wait on, then the consumers.
    finish({Role::kProducer, Role::kLocker, Role::kPipeSender, Role::kManagerProducer});
    queue_.close();
    manager_queue.close();
    finish({Role::kConsumer, Role::kPipeReceiver, Role::kManagerConsumer});
    drain_queue();
    drain_manager(manager_queue);

    check_queue();
    check_pipe();
    check_lock();
    check_pool(tasks, killed_workers);
    check_manager(manager_queue);
    int dead = 0;
    for (const auto& m : members_) dead += m.killed;
    log << "soak: round " << number_ << ": killed " << dead << " of " << members_.size() << " processes and "
        << killed_workers.size() << " pool workers; queue " << delivered_ << " delivered, "
        << queue_.abandoned_count() << " abandoned; pipe " << ledger_.pipe_received.load(std::memory_order_relaxed)
        << "; lock repairs " << ledger_.lock_repairs.load(std::memory_order_relaxed) << "; problems so far "
        << report_.problems.size() << "\n";
  }

 private:
  template <typename F>
  void start(Role role, int index, F body) {
    members_.push_back(Member{role, index, std::make_unique<ForkedChild>(body)});
  }

  void problem(const std::string& what) {
    report_.problems.push_back("round " + std::to_string(number_) + " (key " + std::to_string(key_) + "): " + what);
  }

  int killed(Role role) const {
    int n = 0;
    for (const auto& m : members_) n += m.role == role && m.killed;
    return n;
  }
  bool killed_any(Role role, int index) const {
    for (const auto& m : members_) {
      if (m.role == role && m.index == index && m.killed) return true;
    }
    return false;
  }

  // Waits for the members of these roles: a killed one must show SIGKILL, the others exit 0 within the deadline.
  void finish(std::initializer_list<Role> roles) {
    for (auto& m : members_) {
      if (std::find(roles.begin(), roles.end(), m.role) == roles.end()) continue;
      const std::string p = test::exit_problem(*m.child, m.killed ? -SIGKILL : 0, m.label(), kDeadline);
      if (!p.empty()) {
        // A process killed just as it finished has exited 0 instead: that is no problem.
        if (!(m.killed && m.child->wait(0ms) == 0)) problem(p);
      }
    }
  }

  int producer(int p) {
    for (uint32_t seq = 0; seq < kMaxSeq && !ledger_.stop.load(std::memory_order_relaxed); ++seq) {
      const Message m{static_cast<uint32_t>(p), seq, checksum(key_, p, seq)};
      for (;;) {
        const Outcome o = queue_.put(m, 50ms);
        if (o == Outcome::kOk) break;
        if (o == Outcome::kClosed || ledger_.stop.load(std::memory_order_relaxed)) return 0;
      }
      ledger_.queue_committed[p].store(seq + 1, std::memory_order_relaxed);
    }
    return 0;
  }

  int consumer() {
    for (;;) {
      Message m;
      const Outcome o = queue_.get(m, 50ms);
      if (o == Outcome::kClosed) return 0;
      if (o != Outcome::kOk) continue;
      record(m);
    }
  }

  void record(const Message& m) {
    if (m.producer >= kProducers || m.seq >= kMaxSeq || m.check != checksum(key_, m.producer, m.seq)) {
      ledger_.queue_corrupt.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    ledger_.queue_received[m.producer][m.seq].fetch_add(1, std::memory_order_relaxed);
  }

  int locker() {
    while (!ledger_.stop.load(std::memory_order_relaxed)) {
      const Outcome o = lock_.acquire(kDeadline);
      if (o == Outcome::kTimeout) return 3;  // nobody released it: a hang
      if (o == Outcome::kOwnerDied) {
        pair_.b = pair_.a;  // the dead holder may have stopped between the two increments
        ledger_.lock_repairs.fetch_add(1, std::memory_order_relaxed);
        lock_.mark_consistent();
      } else if (pair_.a != pair_.b) {
        ledger_.lock_inconsistent.fetch_add(1, std::memory_order_relaxed);
      }
      ++pair_.a;
      for (int spin = 0; spin < 200; ++spin) {
        asm volatile("");  // a window between the two increments that the compiler keeps
      }
      ++pair_.b;
      ledger_.lock_rounds.fetch_add(1, std::memory_order_relaxed);
      lock_.release();
    }
    return 0;
  }

  int pipe_sender(Connection& out) {
    std::mt19937 local(static_cast<uint32_t>(key_));
    for (uint32_t seq = 0; !ledger_.stop.load(std::memory_order_relaxed); ++seq) {
      if (out.send(pipe_payload(key_, seq, local() % 3000)) != Outcome::kOk) return 0;  // kClosed: the receiver died
      ledger_.pipe_committed.store(seq + 1, std::memory_order_relaxed);
    }
    return 0;
  }

  int pipe_receiver(Connection& in) {
    for (;;) {
      std::optional<std::string> s = in.recv<std::string>();
      if (!s) return 0;  // end of stream: the sender finished or died
      const uint32_t expected = ledger_.pipe_received.load(std::memory_order_relaxed);
      if (!pipe_payload_ok(key_, *s, expected)) {
        ledger_.pipe_bad.fetch_add(1, std::memory_order_relaxed);
        return 0;
      }
      ledger_.pipe_received.store(expected + 1, std::memory_order_relaxed);
    }
  }

  int manager_producer() {
    manager::Client c(server_.address(), server_.key());
    manager::QueueProxy q = c.queue(manager_queue_name_, 0, manager::Open::kExisting);
    for (uint32_t seq = 0; seq < kMaxSeq && !ledger_.stop.load(std::memory_order_relaxed); ++seq) {
      if (q.put(manager::Value(manager_item(key_, seq))) != Outcome::kOk) return 0;
      ledger_.manager_committed.store(seq + 1, std::memory_order_relaxed);
    }
    return 0;
  }

  void record_manager(const manager::Value& v) {
    const uint64_t item = static_cast<uint64_t>(v.as_int());
    const uint32_t seq = static_cast<uint32_t>(item >> 32);
    if (seq >= kMaxSeq || static_cast<int64_t>(item) != manager_item(key_, seq)) {
      ledger_.manager_corrupt.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    ledger_.manager_received[seq].fetch_add(1, std::memory_order_relaxed);
  }

  int manager_consumer() {
    manager::Client c(server_.address(), server_.key());
    manager::QueueProxy q = c.queue(manager_queue_name_, 0, manager::Open::kExisting);
    for (;;) {
      manager::QueueItem item = q.get(std::chrono::nanoseconds(50ms));
      if (item.status == Outcome::kClosed) return 0;
      if (item) record_manager(item.value);
    }
  }

  // Consumers that were all killed leave messages behind: the parent takes them, as a new consumer would.
  void drain_queue() {
    Message m;
    while (queue_.try_get(m) == Outcome::kOk) record(m);
  }
  void drain_manager(manager::QueueProxy& q) {
    for (;;) {
      manager::QueueItem item = q.get(std::chrono::nanoseconds(0));
      if (!item) return;
      record_manager(item.value);
    }
  }

  void check_queue() {
    if (ledger_.queue_corrupt.load(std::memory_order_relaxed)) problem("queue: corrupt messages received");
    uint64_t missing = 0;
    for (int p = 0; p < kProducers; ++p) {
      const uint32_t committed = ledger_.queue_committed[p].load(std::memory_order_relaxed);
      for (uint32_t seq = 0; seq < kMaxSeq; ++seq) {
        const uint32_t n = ledger_.queue_received[p][seq].load(std::memory_order_relaxed);
        delivered_ += n;
        if (n > 1) problem("queue: producer " + std::to_string(p) + "'s message " + std::to_string(seq) +
                           " arrived " + std::to_string(n) + " times");
        if (seq < committed && n == 0) ++missing;
        // A put that returned just before its producer was killed is delivered without having been recorded.
        if (seq >= committed && n > 0 && !(seq == committed && killed_any(Role::kProducer, p))) {
          problem("queue: producer " + std::to_string(p) + "'s message " + std::to_string(seq) +
                  " arrived although only " + std::to_string(committed) + " puts returned");
        }
      }
    }
    const uint64_t abandoned = queue_.abandoned_count();
    const uint64_t allowed = abandoned + static_cast<uint64_t>(killed(Role::kConsumer));
    if (missing > allowed) {
      problem("queue: " + std::to_string(missing) + " committed messages never arrived; abandoned_count() is " +
              std::to_string(abandoned) + " and " + std::to_string(killed(Role::kConsumer)) +
              " consumers were killed");
    }
    if (abandoned > static_cast<uint64_t>(killed(Role::kProducer) + killed(Role::kConsumer))) {
      problem("queue: abandoned_count() " + std::to_string(abandoned) + " exceeds the processes killed");
    }
    report_.queue_messages += delivered_;
    report_.queue_abandoned += abandoned;
  }

  void check_pipe() {
    const uint32_t committed = ledger_.pipe_committed.load(std::memory_order_relaxed);
    const uint32_t received = ledger_.pipe_received.load(std::memory_order_relaxed);
    if (ledger_.pipe_bad.load(std::memory_order_relaxed)) {
      problem("pipe: message " + std::to_string(received) + " arrived out of order or corrupt");
    }
    if (!killed(Role::kPipeReceiver) &&
        !(received == committed || (received == committed + 1 && killed(Role::kPipeSender)))) {
      problem("pipe: " + std::to_string(committed) + " sends returned, the receiver got " + std::to_string(received));
    }
    report_.pipe_messages += received;
  }

  void check_lock() {
    const Outcome o = lock_.acquire(kDeadline);
    if (!holds(o)) {
      problem("lock: the parent could not acquire it within the deadline");
      return;
    }
    uint64_t repairs = ledger_.lock_repairs.load(std::memory_order_relaxed);
    if (o == Outcome::kOwnerDied) {
      pair_.b = pair_.a;
      ++repairs;
      lock_.mark_consistent();
    }
    if (pair_.a != pair_.b) problem("lock: the guarded pair is unequal and nobody was told its holder died");
    if (ledger_.lock_inconsistent.load(std::memory_order_relaxed)) {
      problem("lock: a holder found the pair unequal without kOwnerDied");
    }
    if (repairs > static_cast<uint64_t>(killed(Role::kLocker))) {
      problem("lock: " + std::to_string(repairs) + " owner-died repairs for " + std::to_string(killed(Role::kLocker)) +
              " lockers killed");
    }
    lock_.release();
    report_.lock_repairs += repairs;
  }

  void check_pool(std::vector<std::pair<int64_t, Future<int64_t>>>& tasks, const std::set<int>& killed_workers) {
    uint64_t lost = 0;
    for (auto& [x, f] : tasks) {
      try {
        const std::optional<int64_t> v = f.get(kDeadline);
        if (!v) {
          problem("pool: task " + std::to_string(x) + " did not finish within the deadline");
        } else if (*v != x * 7 + 1) {
          problem("pool: task " + std::to_string(x) + " returned " + std::to_string(*v));
        }
      } catch (const WorkerLost& e) {
        ++lost;
        if (!killed_workers.count(e.pid())) {
          problem("pool: WorkerLost names pid " + std::to_string(e.pid()) + ", which the soak did not kill: " + e.what());
        }
      } catch (const std::exception& e) {
        problem(std::string("pool: task failed with ") + e.what());
      }
    }
    if (lost > killed_workers.size()) {
      problem("pool: " + std::to_string(lost) + " tasks lost for " + std::to_string(killed_workers.size()) +
              " workers killed");
    }
    report_.pool_tasks += tasks.size();
    report_.pool_worker_lost += lost;
  }

  void check_manager(manager::QueueProxy& q) {
    if (ledger_.manager_corrupt.load(std::memory_order_relaxed)) problem("manager: corrupt items received");
    const uint32_t committed = ledger_.manager_committed.load(std::memory_order_relaxed);
    uint64_t missing = 0, delivered = 0;
    for (uint32_t seq = 0; seq < kMaxSeq; ++seq) {
      const uint32_t n = ledger_.manager_received[seq].load(std::memory_order_relaxed);
      delivered += n;
      if (n > 1) problem("manager: item " + std::to_string(seq) + " arrived " + std::to_string(n) + " times");
      if (seq < committed && n == 0) ++missing;
      if (seq >= committed && n > 0 && !(seq == committed && killed(Role::kManagerProducer))) {
        problem("manager: item " + std::to_string(seq) + " arrived although only " + std::to_string(committed) +
                " puts returned");
      }
    }
    // Every loss is in abandoned_count(): a consumer killed inside get() after it read the item's reply included
    // (the consumers use the shared rings, docs/manager.md). The allowance of one item per consumer killed is the
    // soak's own window: between get()'s return and record_manager(). A consumer has one get in flight, so it
    // cannot be counted for more than one item either.
    const uint64_t abandoned = q.abandoned_count();
    if (missing > abandoned + static_cast<uint64_t>(killed(Role::kManagerConsumer))) {
      problem("manager: " + std::to_string(missing) + " items never arrived; abandoned_count() is " +
              std::to_string(abandoned));
    }
    if (abandoned > static_cast<uint64_t>(killed(Role::kManagerConsumer))) {
      problem("manager: abandoned_count() " + std::to_string(abandoned) + " exceeds the " +
              std::to_string(killed(Role::kManagerConsumer)) + " consumers killed");
    }
    report_.manager_items += delivered;
  }

  const uint64_t number_;
  const uint64_t key_;
  std::mt19937_64& rng_;
  Pool& pool_;
  const manager::ServerProcess& server_;
  manager::Client& client_;
  Report& report_;
  test::SharedMapping ledger_mapping_;
  Ledger& ledger_;
  Segment segment_;
  Queue<Message> queue_;
  Lock& lock_;
  Pair& pair_;
  const std::string manager_queue_name_;
  std::vector<Member> members_;
  uint64_t delivered_ = 0;
};

}  // namespace

std::string Report::summary() const {
  return "seed " + std::to_string(seed) + ": " + std::to_string(rounds) + " rounds, " + std::to_string(kills) +
         " processes killed; queue " + std::to_string(queue_messages) + " messages delivered, " +
         std::to_string(queue_abandoned) + " abandoned (counted); pipe " + std::to_string(pipe_messages) +
         " messages; " + std::to_string(lock_repairs) + " lock repairs after kOwnerDied; pool " +
         std::to_string(pool_tasks) + " tasks, " + std::to_string(pool_worker_lost) + " WorkerLost; manager " +
         std::to_string(manager_items) + " items; " + std::to_string(problems.size()) + " problems";
}

Report run(const Options& options, std::ostream& log) {
  Report report;
  report.seed = options.seed ? options.seed : std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
  log << "soak: seed " << report.seed << " (replay: --seed=" << report.seed << ")" << std::endl;
  std::mt19937_64 rng(report.seed);
  const std::string prefix = "soak-" + std::to_string(getpid()) + "-" + std::to_string(report.seed % 100000);
  {
    manager::ServerProcess server = manager::start_server();
    manager::Client client(server.address(), server.key());
    PoolOptions pool_options;
    pool_options.workers = 2;
    pool_options.start_method = StartMethod::kForkServer;  // workers inherit none of the rounds' descriptors
    Pool pool(pool_options);
    const auto end = std::chrono::steady_clock::now() + options.duration;
    while (std::chrono::steady_clock::now() < end) {
      Round round(report.rounds, report.seed, rng, pool, server, client, prefix, report);
      round.run(log);
      ++report.rounds;
      log.flush();
    }
  }
  for (const auto& info : Segment::list()) {
    if (info.name.rfind(prefix, 0) == 0 || info.file.find(prefix) != std::string::npos) {
      report.problems.push_back("segment '" + info.file + "' is left after the soak");
    }
  }
  log << "soak: " << report.summary() << std::endl;
  for (const auto& p : report.problems) log << "soak: PROBLEM: " << p << "\n";
  return report;
}

}  // namespace ipc::soak
