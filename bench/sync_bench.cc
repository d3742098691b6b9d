// bench/sync_bench.cc: the "sync" group of //bench:all: Lock against a process-shared pthread_mutex and Boost's
// interprocess_mutex, and Value<int64_t> increments against Python's multiprocessing.Value under its lock.
// Every figure is measured with its peers in the same run (median of several repetitions).

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "ipc/base/process.h"
#include "ipc/shared/value.h"
#include "ipc/sync/lock.h"

namespace {

constexpr int kReps = 5;
constexpr int64_t kUncontendedOps = 2'000'000;
constexpr int64_t kContendedOpsPerProcess = 300'000;
constexpr int kProcesses = 2;

// Memory shared with forked children; the object under test plus a counter it protects.
template <typename M>
struct Arena {
  M mutex;
  alignas(64) int64_t counter = 0;  // own cache line: the measured traffic is the lock's, plus this one write
};

template <typename M>
Arena<M>* make_arena() {
  void* p = mmap(nullptr, sizeof(Arena<M>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return new (p) Arena<M>();
}
template <typename M>
void free_arena(Arena<M>* a) {
  a->~Arena<M>();
  munmap(a, sizeof(Arena<M>));
}

// Seconds for `kProcesses` forked children each running `body` once, started together by a pipe.
double run_in_processes(const std::function<void()>& body) {
  int go[2];
  if (pipe(go) != 0) std::exit(1);
  std::vector<ipc::Process> kids;
  for (int i = 0; i < kProcesses; ++i) {
    kids.push_back(ipc::Process::start([&] {
      char b;
      close(go[1]);
      (void)!read(go[0], &b, 1);  // returns 0 (end of file) when the parent closes its end: the start signal
      body();
    }));
  }
  close(go[0]);
  double start = bench::now_seconds();
  close(go[1]);
  for (ipc::Process& k : kids) (void)k.join();
  return bench::now_seconds() - start;
}

// The plain process-shared pthread mutex is the peer. The robust one is what Lock is built on: its row shows what
// surviving a dead owner costs by itself (the robust-list bookkeeping on every lock and unlock).
template <bool kRobust>
struct PthreadMutex {
  pthread_mutex_t m;
  PthreadMutex() {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (kRobust) pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&m, &a);
    pthread_mutexattr_destroy(&a);
  }
  void lock() { pthread_mutex_lock(&m); }
  void unlock() { pthread_mutex_unlock(&m); }
};

struct BoostMutex {
  boost::interprocess::interprocess_mutex m;
  void lock() { m.lock(); }
  void unlock() { m.unlock(); }
};

// ipc::Lock behind the same two calls; the result is checked, since ignoring it is what users must not do.
struct OurLock {
  ipc::Lock l;
  void lock() {
    if (l.acquire() != ipc::Outcome::kOk) std::abort();
  }
  void unlock() { l.release(); }
};

template <typename M>
double uncontended_ns() {
  auto* a = make_arena<M>();
  double ns = bench::median_of(kReps, [&] {
    double t = bench::now_seconds();
    for (int64_t i = 0; i < kUncontendedOps; ++i) {
      a->mutex.lock();
      ++a->counter;
      a->mutex.unlock();
    }
    return (bench::now_seconds() - t) * 1e9 / kUncontendedOps;
  });
  free_arena(a);
  return ns;
}

template <typename M>
double contended_ns() {
  auto* a = make_arena<M>();
  double ns = bench::median_of(kReps, [&] {
    double s = run_in_processes([&] {
      for (int64_t i = 0; i < kContendedOpsPerProcess; ++i) {
        a->mutex.lock();
        ++a->counter;
        a->mutex.unlock();
      }
    });
    return s * 1e9 / (kContendedOpsPerProcess * kProcesses);
  });
  free_arena(a);
  return ns;
}

double value_incs_per_s(bool locked) {
  void* p = mmap(nullptr, sizeof(ipc::Value<int64_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  auto* v = new (p) ipc::Value<int64_t>(0);
  double r = bench::median_of(kReps, [&] {
    double s = run_in_processes([&] {
      for (int64_t i = 0; i < kContendedOpsPerProcess; ++i) {
        if (locked) {
          auto g = v->lock();
          g.set(g.get() + 1);
        } else {
          v->fetch_add(1);
        }
      }
    });
    return kContendedOpsPerProcess * kProcesses / s;
  });
  v->~Value();
  munmap(p, sizeof(ipc::Value<int64_t>));
  return r;
}

const bench::Group group("sync", [](bench::Report& report) {
  double ours = uncontended_ns<OurLock>();
  double pth = uncontended_ns<PthreadMutex<false>>();
  double robust = uncontended_ns<PthreadMutex<true>>();
  double boost = uncontended_ns<BoostMutex>();
  report.add("Lock acquire+release, uncontended", ours, "ns", "pthread_mutex (process-shared)", pth);
  report.add("Lock acquire+release, uncontended", ours, "ns", "pthread_mutex (shared, robust)", robust);
  report.add("Lock acquire+release, uncontended", ours, "ns", "Boost interprocess_mutex", boost);

  ours = contended_ns<OurLock>();
  pth = contended_ns<PthreadMutex<false>>();
  robust = contended_ns<PthreadMutex<true>>();
  boost = contended_ns<BoostMutex>();
  report.add("Lock acquire+release, 2 processes contending", ours, "ns", "pthread_mutex (process-shared)", pth);
  report.add("Lock acquire+release, 2 processes contending", ours, "ns", "pthread_mutex (shared, robust)", robust);
  report.add("Lock acquire+release, 2 processes contending", ours, "ns", "Boost interprocess_mutex", boost);

  const std::string n = std::to_string(kContendedOpsPerProcess / 3);  // Python is slow: fewer, same rate unit
  double python = bench::python_peer("value", {n});
  report.add("Value<int64_t> increments, 2 processes, locked", value_incs_per_s(true), "incs/s",
             "Python mp.Value under its lock", python);
  report.add("Value<int64_t> increments, 2 processes, fetch_add", value_incs_per_s(false), "incs/s",
             "Python mp.Value under its lock", python);
});

}  // namespace
