// bench/pool_bench.cc: the "pool" group of //bench:all: ipc::Pool figures beside their peers, same run (issue 10).
//
//   map of 1e6 trivial tasks          vs Python Pool.map (default chunksize) and an in-process std::thread pool
//   apply_async per task (20k)        vs Python Pool.map(chunksize=1) (and Python apply_async, for context)
//   start + one apply + close + join  vs Python Pool(2) start + map of one item + close + join, each timed in a fresh
//                                     process (bench/pool_start_stop --rounds; a fresh interpreter), footprints
//                                     of both and of bench/all printed; the same inside bench/all; and the floor:
//                                     two bare children of bench/all (fork, or exec of /bin/true), joined
//   CPU-bound map over a shared array vs the same work in one process (speed-up) and on 2 std::threads, and the
//                                     CPU time each took
//   map_array over the same array     placed workers, chunks routed to their pages' node, vs unplaced workers with
//                                     locality off, and vs one process (the fraction of chunks at home in the name)
//   worker killed -> replacement      no peer
// Every pool has 2 workers (the machines have 2 CPUs); Python's use the fork start method, as ours do.
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <functional>
#include <mutex>
#include <numeric>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/harness.h"
#include "ipc/base/process.h"
#include "ipc/numa/topology.h"
#include "ipc/pool/pool.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/array.h"

namespace {

constexpr unsigned kWorkers = 2;
constexpr int kReps = 5;

ipc::PoolOptions with_workers(unsigned n = kWorkers) {
  ipc::PoolOptions o;
  o.workers = n;
  return o;
}

int inc(int x) { return x + 1; }
int worker_pid() { return static_cast<int>(::getpid()); }

// Python's figure for `peer` (one fresh interpreter per repetition), scaled (seconds -> ms, say).
bench::Sample python_sample(const std::string& peer, const std::vector<std::string>& args, double scale = 1) {
  return bench::sample_of(kReps, [&] {
    const double v = bench::python_peer(peer, args);
    return v > 0 ? v * scale : -1;
  });
}

// ---- the in-process peer: std::threads started once, a job's chunks handed out from a shared counter ----------
class ThreadPool {
 public:
  explicit ThreadPool(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  // Runs body(0) ... body(chunks - 1) on the pool's threads; returns when all are done.
  void run(size_t chunks, const std::function<void(size_t)>& body) {
    std::unique_lock lock(mu_);
    body_ = &body;
    next_ = 0;
    chunks_ = left_ = chunks;
    ++generation_;
    work_cv_.notify_all();
    done_cv_.wait(lock, [&] { return left_ == 0; });
  }

 private:
  void loop() {
    uint64_t seen = 0;
    std::unique_lock lock(mu_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      while (next_ < chunks_) {
        const size_t c = next_++;
        lock.unlock();
        (*body_)(c);
        lock.lock();
        if (--left_ == 0) done_cv_.notify_all();
      }
    }
  }
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  const std::function<void(size_t)>* body_ = nullptr;
  size_t next_ = 0, chunks_ = 0, left_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// ---- map and apply_async of trivial tasks -------------------------------------------------------------------------
constexpr int kMapTasks = 1'000'000;
constexpr int kApplyTasks = 20'000;

double pool_map_tasks_per_s(ipc::Pool& pool, const std::vector<int>& in) {
  const double t0 = bench::now_seconds();
  const std::vector<int> out = pool.map(inc, in);  // default chunking: ceil(n / (4 x workers)), as Python's
  const double dt = bench::now_seconds() - t0;
  return out.size() == in.size() && out.back() == in.back() + 1 ? static_cast<double>(in.size()) / dt : -1;
}

double threads_map_tasks_per_s(ThreadPool& threads, const std::vector<int>& in) {
  const size_t chunks = 4 * kWorkers, per = (in.size() + chunks - 1) / chunks;  // the same chunks as the map
  const double t0 = bench::now_seconds();
  std::vector<int> out(in.size());
  threads.run(chunks, [&](size_t c) {
    for (size_t i = c * per; i < std::min(in.size(), (c + 1) * per); ++i) out[i] = inc(in[i]);
  });
  const double dt = bench::now_seconds() - t0;
  return out.back() == in.back() + 1 ? static_cast<double>(in.size()) / dt : -1;
}

double pool_apply_async_tasks_per_s(ipc::Pool& pool, int n) {
  std::vector<ipc::Future<int>> futures;
  futures.reserve(static_cast<size_t>(n));
  const double t0 = bench::now_seconds();
  for (int i = 0; i < n; ++i) futures.push_back(pool.apply_async(inc, i));
  int64_t sum = 0;
  for (auto& f : futures) sum += f.get();
  const double dt = bench::now_seconds() - t0;
  return sum == int64_t{n} * (n + 1) / 2 ? n / dt : -1;
}

// ---- start and shut down ----------------------------------------------------------------------------------------
// A fork copies the forking process's page tables, and every page either side writes afterwards costs a fault: the
// start rows depend on the size of the process that forks. Python's figure comes from a fresh interpreter; ours is
// measured the same way, in fresh small programs (bench/pool_start_stop --rounds) run in turns with Python's, with
// both footprints printed, and again inside this larger process, for context.
double pool_start_stop_ms(ipc::StartMethod method) {
  const double t0 = bench::now_seconds();
  ipc::PoolOptions o = with_workers();
  o.start_method = method;
  ipc::Pool pool(o);
  if (pool.apply(inc, 1) != 2) return -1;
  pool.close();
  pool.join();
  return (bench::now_seconds() - t0) * 1e3;
}

// A process's footprint as a fork sees it: VmRSS and VmSize (kB) and its count of mappings.
struct Footprint {
  double rss_kb = -1, size_kb = -1, mappings = -1;
};

Footprint own_footprint() {
  Footprint f;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) f.rss_kb = std::stod(line.substr(6));
    if (line.rfind("VmSize:", 0) == 0) f.size_kb = std::stod(line.substr(7));
  }
  std::ifstream maps("/proc/self/maps");
  f.mappings = 0;
  for (std::string line; std::getline(maps, line);) ++f.mappings;
  return f;
}

// What a fresh process timing its own rounds printed: "ms <x>" lines and one "footprint <rss> <size> <maps>".
struct FreshRounds {
  std::vector<double> ms;
  Footprint footprint;
};

FreshRounds fresh_rounds(const std::string& command) {
  FreshRounds out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen((command + " 2>/dev/null").c_str(), "r"), pclose);
  if (!p) return out;
  char line[256];
  while (std::fgets(line, sizeof line, p.get())) {
    double a, b, c;
    if (std::sscanf(line, "ms %lf", &a) == 1) out.ms.push_back(a);
    if (std::sscanf(line, "footprint %lf %lf %lf", &a, &b, &c) == 3) out.footprint = {a, b, c};
  }
  return out;
}

// bench/pool_start_stop, built beside this program (a data dependency of the pool group).
std::string start_stop_program() {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "bench/pool_start_stop";
  const std::string path(self, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/') + 1) + "pool_start_stop";
}

// What bounds the start rows on this machine, measured from this same process: two children started as the pool
// starts its workers (Process::start, a fork of this program; Process::exec of /bin/true, the smallest program
// there is), each leaving at once, then joined.
double bare_children_ms(ipc::StartMethod method) {
  const double t0 = bench::now_seconds();
  std::vector<ipc::Process> children;
  for (unsigned i = 0; i < kWorkers; ++i) {
    children.push_back(method == ipc::StartMethod::kExec ? ipc::Process::exec("/bin/true", {"true"})
                                                         : ipc::Process::start([] { return 0; }));
  }
  for (auto& c : children) {
    if (c.join() != 0) return -1;
  }
  return (bench::now_seconds() - t0) * 1e3;
}

void start_rows(bench::Report& r) {
  constexpr int kRounds = 2 * kReps, kRoundsEach = 2;
  const std::string rounds_each = std::to_string(kRoundsEach), workers = std::to_string(kWorkers);
  const Footprint here = own_footprint();
  // Each start method beside Python's nearest one (the harness's main started the fork server, as Python's
  // untimed first round starts its own).
  const struct {
    ipc::StartMethod method;
    const char* ours;
    const char* argument;  // of bench/pool_start_stop
    const char* python;
  } methods[] = {{ipc::StartMethod::kFork, "fork", "fork", "fork"},
                 {ipc::StartMethod::kForkServer, "fork server", "forkserver", "forkserver"},
                 {ipc::StartMethod::kExec, "exec", "exec", "spawn"}};
  for (const auto& m : methods) {
    // Fresh processes of ours and of Python's in turns, each timing kRoundsEach rounds, so that both see the same
    // load; the footprints are the first process's.
    FreshRounds ours, py;
    for (int i = 0; i < kRounds / kRoundsEach; ++i) {
      const FreshRounds o = fresh_rounds(start_stop_program() + " " + m.argument + " --rounds " + rounds_each);
      const FreshRounds p = fresh_rounds("python3 bench/python_peers.py pool_start_stop_rounds " + workers + " " +
                                         m.python + " " + rounds_each);
      if (i == 0) ours.footprint = o.footprint, py.footprint = p.footprint;
      ours.ms.insert(ours.ms.end(), o.ms.begin(), o.ms.end());
      py.ms.insert(py.ms.end(), p.ms.begin(), p.ms.end());
    }
    const bench::Sample ours_fresh = bench::summarize(ours.ms), py_fresh = bench::summarize(py.ms);
    const std::string python = std::string("Python Pool(2) (") + m.python + "), map of 1, close, join; fresh interpreter";
    r.add(std::string("pool: start 2 workers (") + m.ours + "), 1 apply, close, join; fresh program", ours_fresh, "ms",
          python, py_fresh);
    r.target(std::string("pool: start+shutdown (") + m.ours + ") vs Python " + m.python + ", both fresh (speed-up)",
             py_fresh.n > 0 && ours_fresh.median > 0 ? py_fresh.median / ours_fresh.median : 0, ">=", 10);
    auto in_here = [&] { return pool_start_stop_ms(m.method); };
    (void)in_here();
    r.add(std::string("pool: the same (") + m.ours + ") inside bench/all, a larger process", bench::sample_of(kRounds, in_here),
          "ms", python, py_fresh);
    if (m.method == ipc::StartMethod::kFork) {
      // What the forks copied the page tables of: each process as it was at its first timed fork.
      r.add("pool start footprint: VmRSS of pool_start_stop", ours.footprint.rss_kb / 1024, "MiB",
            "Python's interpreter", py.footprint.rss_kb / 1024);
      r.add("pool start footprint: VmSize of pool_start_stop", ours.footprint.size_kb / 1024, "MiB",
            "Python's interpreter", py.footprint.size_kb / 1024);
      r.add("pool start footprint: mappings of pool_start_stop", ours.footprint.mappings, "maps",
            "Python's interpreter", py.footprint.mappings);
      r.add("pool start footprint: VmRSS of bench/all", here.rss_kb / 1024, "MiB");
      r.add("pool start footprint: VmSize of bench/all", here.size_kb / 1024, "MiB");
      r.add("pool start footprint: mappings of bench/all", here.mappings, "maps");
    }
  }
  for (const auto method : {ipc::StartMethod::kFork, ipc::StartMethod::kExec}) {
    auto once = [&] { return bare_children_ms(method); };
    (void)once();
    r.add(method == ipc::StartMethod::kFork
              ? "pool floor in bench/all: 2 x Process::start of a no-op (fork of this program), join"
              : "pool floor in bench/all: 2 x Process::exec of /bin/true, join",
          bench::sample_of(kRounds, once), "ms");
  }
}

// ---- CPU-bound map over a large shared array --------------------------------------------------------------------
constexpr size_t kElements = size_t{64} << 20;  // 64 Mi uint32_t: 256 MiB
constexpr size_t kRange = size_t{1} << 20;      // elements per task

// The array the workers read: set before the pool forks them, so each worker has it at the same address.
const uint32_t* g_elements = nullptr;

// A small compute per element (a few rounds of an integer mixer), so that the figure is CPU-bound, not memory-bound.
inline uint32_t mix(uint32_t x) {
  for (int round = 0; round < 3; ++round) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
  }
  return x ^ (x >> 16);
}

// One task: the elements [range.first, range.second) of the shared array. Not inlined: the pool, one process and
// the threads all run this same code.
__attribute__((noinline)) uint64_t mix_sum(std::pair<uint64_t, uint64_t> range) {
  uint64_t sum = 0;
  for (uint64_t i = range.first; i < range.second; ++i) sum += mix(g_elements[i]);
  return sum;
}

std::vector<std::pair<uint64_t, uint64_t>> ranges() {
  std::vector<std::pair<uint64_t, uint64_t>> r;
  for (uint64_t b = 0; b < kElements; b += kRange) r.emplace_back(b, std::min<uint64_t>(kElements, b + kRange));
  return r;
}

double process_cpu_seconds(clockid_t clock) {
  timespec ts{};
  return clock_gettime(clock, &ts) == 0 ? static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9 : 0;
}

// CPU seconds used so far by this process (all its threads) and by `pids`.
double cpu_seconds(const std::vector<int>& pids) {
  double s = process_cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
  for (int pid : pids) {
    clockid_t clock;
    if (clock_getcpuclockid(pid, &clock) == 0) s += process_cpu_seconds(clock);
  }
  return s;
}

// Runs `sum_all` (which returns the sum of mix over the array) once: elements/s and CPU ms (this process and
// `pids`), or -1s when the sum is not `expected`.
struct Timed {
  double rate = -1;    // elements/s
  double cpu_ms = -1;  // this process's threads and the workers
};
Timed timed_mix(const std::function<uint64_t()>& sum_all, uint64_t expected, const std::vector<int>& pids = {}) {
  const double cpu0 = cpu_seconds(pids), t0 = bench::now_seconds();
  const uint64_t sum = sum_all();
  const double t = bench::now_seconds() - t0, cpu = cpu_seconds(pids) - cpu0;
  if (sum != expected) return {};
  return {static_cast<double>(kElements) / t, cpu * 1e3};
}

// Maps every page of [p, p + bytes) into this process and reads a word of each. A forked worker has none of a
// MAP_SHARED mapping's pages mapped, and takes a fault (the kernel maps 16 pages around it) on each one it touches
// first: ~4 k faults for 256 MiB, paid again by every fresh worker. madvise(MADV_POPULATE_READ) maps them all in
// one call; the read of each page is still needed on a virtual machine that shadows the page tables (PVM, measured
// on ours: a fresh process's first read of each 4 KiB page costs ~15 us there, ~1 s for 256 MiB, populated or not,
// and nothing after it), so the timed maps see what a long-lived worker sees.
void prefault(const void* p, size_t bytes) {
#ifndef MADV_POPULATE_READ
  constexpr int MADV_POPULATE_READ = 22;  // Linux 5.14
#endif
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{4095};
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ);  // fewer faults where it works
  uint32_t sink = 0;
  for (uintptr_t a = begin; a < end; a += 4096) sink += *reinterpret_cast<const volatile uint32_t*>(a);
  (void)sink;
}

// One map_array chunk: the same work as mix_sum, on the array's own memory in the worker.
__attribute__((noinline)) uint64_t mix_chunk(std::span<uint32_t> chunk) {
  uint64_t sum = 0;
  for (uint32_t x : chunk) sum += mix(x);
  return sum;
}

// The same map through Pool::map_array: placed workers with each chunk sent to the node of its pages, against
// unplaced workers taking chunks as they come, and one process. On one node this measures only what placement
// and routing cost (every chunk is at home either way); on several, the array is interleaved page by page, so a
// chunk's home is the node of most of its pages.
void map_array_rows(bench::Report& r, ipc::Segment& segment, ipc::Array<uint32_t>& array, uint64_t expected,
                    const bench::Sample& one) {
  ipc::PoolOptions placed_options = with_workers();
  placed_options.placement = ipc::Placement::spread();
  ipc::Pool placed(placed_options), plain(with_workers());
  ipc::ArrayMapOptions on, off;
  on.chunk_elements = off.chunk_elements = kRange;
  off.locality = false;
  uint64_t at_home[2] = {0, 0}, chunks[2] = {0, 0};
  const auto run = [&](ipc::Pool& p, const ipc::ArrayMapOptions& o, int k) {
    const auto m = p.map_array(mix_chunk, segment, array, o);
    at_home[k] += m.chunks_at_home, chunks[k] += m.chunks;
    return std::accumulate(m.results.begin(), m.results.end(), uint64_t{0});
  };
  // Warm-up: each worker opens the segment and maps the pages it touches.
  (void)timed_mix([&] { return run(placed, on, 0); }, expected);
  (void)timed_mix([&] { return run(plain, off, 1); }, expected);
  at_home[0] = at_home[1] = chunks[0] = chunks[1] = 0;
  std::vector<double> rate[2];
  for (int i = 0; i < kReps; ++i) {
    rate[0].push_back(timed_mix([&] { return run(placed, on, 0); }, expected).rate);
    rate[1].push_back(timed_mix([&] { return run(plain, off, 1); }, expected).rate);
  }
  const bench::Sample locality = bench::summarize(rate[0]), anywhere = bench::summarize(rate[1]);
  const auto pct = [&](int k) {
    return std::to_string(chunks[k] ? 100 * at_home[k] / chunks[k] : 0) + "% of chunks at home";
  };
  const std::string nodes = ipc::numa::Topology::online_nodes().count() > 1 ? "interleaved" : "1 node";
  r.add("pool: map_array CPU-bound (" + nodes + "), spread + locality on, " + pct(0), locality, "elem/s",
        "no placement, locality off (" + pct(1) + ")", anywhere);
  r.add("pool: map_array CPU-bound (" + nodes + "), spread + locality on", locality, "elem/s",
        "the same work in one process", one);
}

void cpu_bound_rows(bench::Report& r) {
  // The array lives in a Segment (MAP_SHARED), interleaved over the nodes when there are several.
  ipc::ArrayOptions array_options;
  const ipc::numa::NodeSet nodes = ipc::numa::Topology::online_nodes();
  if (nodes.count() > 1) array_options.policy = ipc::numa::MemoryPolicy::interleave(nodes);
  const size_t bytes = ipc::Array<uint32_t>::bytes_needed(kElements, array_options) + (size_t{4} << 20);
  ipc::Segment segment = ipc::Segment::create("bench-pool-" + std::to_string(::getpid()), bytes);
  auto& array = ipc::Array<uint32_t>::create(segment, "elements", kElements, array_options);
  for (size_t i = 0; i < kElements; ++i) array[i] = static_cast<uint32_t>(i * 2654435761u);
  g_elements = array.data();

  const auto work = ranges();
  // Forked now: the workers see g_elements. Each maps the array's pages before its first task (see prefault).
  ipc::PoolOptions options = with_workers();
  options.initializer = [] { prefault(g_elements, kElements * sizeof(uint32_t)); };
  ipc::Pool pool(options);
  ThreadPool threads(kWorkers);
  const auto one_process = [&] {
    uint64_t sum = 0;
    for (const auto& range : work) sum += mix_sum(range);
    return sum;
  };
  const auto map_on = [&](ipc::Pool& p) {
    // One range per task: a worker that loses its CPU for a while delays one range, not a quarter of the array.
    const std::vector<uint64_t> sums = p.map(mix_sum, work, 1);
    return std::accumulate(sums.begin(), sums.end(), uint64_t{0});
  };
  const auto in_pool = [&] { return map_on(pool); };
  const auto in_threads = [&] {
    std::vector<uint64_t> sums(work.size());
    threads.run(work.size(), [&](size_t c) { sums[c] = mix_sum(work[c]); });
    return std::accumulate(sums.begin(), sums.end(), uint64_t{0});
  };
  const uint64_t expected = one_process();  // also the warm-up of the pages
  (void)timed_mix(in_pool, expected);
  (void)timed_mix(in_threads, expected);
  // Alternate the three, so that a change in the machine's load hits them alike.
  std::vector<double> rate[3], cpu_ms[3];
  for (int i = 0; i < kReps; ++i) {
    const Timed t[3] = {timed_mix(in_pool, expected, pool.worker_pids()), timed_mix(one_process, expected),
                        timed_mix(in_threads, expected)};
    for (int k = 0; k < 3; ++k) rate[k].push_back(t[k].rate), cpu_ms[k].push_back(t[k].cpu_ms);
  }
  const bench::Sample ours = bench::summarize(rate[0]), one = bench::summarize(rate[1]);
  const std::string name = "pool: CPU-bound map, 64 Mi-element shared array" +
                           std::string(nodes.count() > 1 ? " (interleaved)" : " (1 node)") + ", 2 workers";
  r.add(name, ours, "elem/s", "the same work in one process", one);
  r.add(name, ours, "elem/s", "2 std::threads in-process, same ranges", bench::summarize(rate[2]));
  r.target("pool: CPU-bound map, 2 workers vs one process (speed-up)",
           ours.n > 0 && one.n > 0 ? ours.median / one.median : 0, ">=", 1.8);
  // The CPU it took (this process and the workers): near x1.00 means that the speed-up missing is CPU time the
  // machine did not give us, not work the pool added.
  r.add("pool: CPU-bound map, CPU time (parent + workers)", bench::summarize(cpu_ms[0]), "CPU ms",
        "the same work in one process", bench::summarize(cpu_ms[1]));
  r.add("pool: CPU-bound map, CPU time (parent + workers)", bench::summarize(cpu_ms[0]), "CPU ms",
        "2 std::threads in-process", bench::summarize(cpu_ms[2]));
  pool.close();
  pool.join();
  map_array_rows(r, segment, array, expected, one);
  // The first map of fresh workers that did not map the pages first: the faults it takes.
  const bench::Sample cold = bench::sample_of(3, [&] {
    ipc::Pool fresh(with_workers());
    const Timed t = timed_mix([&] { return map_on(fresh); }, expected, fresh.worker_pids());
    fresh.close();
    fresh.join();
    return t.cpu_ms;
  });
  r.add("pool: CPU-bound map, CPU time, fresh workers, no prefault", cold, "CPU ms", "workers that prefaulted (above)",
        bench::summarize(cpu_ms[0]));
  g_elements = nullptr;
}

// ---- a worker killed -> its replacement ready ---------------------------------------------------------------------
struct Replacement {
  double noticed_ms = -1;   // kill -> the pool no longer lists the worker
  double answered_ms = -1;  // kill -> a task answered by the replacement
};

// In a pool of one worker (a replacement is started when there is work for it: the next task needs one).
Replacement kill_to_replacement(ipc::Pool& pool) {
  const std::vector<int> before = pool.worker_pids();
  if (before.size() != 1) return {};
  const int victim = before[0];
  Replacement out;
  const double t0 = bench::now_seconds();
  ::kill(victim, SIGKILL);
  for (;;) {
    const auto pids = pool.worker_pids();
    if (std::find(pids.begin(), pids.end(), victim) == pids.end()) break;
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  out.noticed_ms = (bench::now_seconds() - t0) * 1e3;
  const int fresh = pool.apply(worker_pid);
  out.answered_ms = (bench::now_seconds() - t0) * 1e3;
  return fresh != victim ? out : Replacement{};
}

void replacement_rows(bench::Report& r) {
  ipc::Pool pool(with_workers(1));
  (void)pool.apply(worker_pid);
  std::vector<double> noticed, answered;
  for (int i = 0; i < 2 * kReps; ++i) {
    const Replacement one = kill_to_replacement(pool);
    noticed.push_back(one.noticed_ms);
    answered.push_back(one.answered_ms);
  }
  r.add("pool: worker SIGKILLed -> the pool noticed (1-worker pool)", bench::summarize(noticed), "ms");
  r.add("pool: worker SIGKILLed -> replacement answered a task", bench::summarize(answered), "ms");
  pool.close();
  pool.join();
}

void run(bench::Report& r) {
  const std::string workers = std::to_string(kWorkers);
  {
    std::vector<int> in(kMapTasks);
    std::iota(in.begin(), in.end(), 0);
    ipc::Pool pool(with_workers());
    ThreadPool threads(kWorkers);
    (void)pool_map_tasks_per_s(pool, in);  // warm-up: first-touch of the rings and the heap
    (void)threads_map_tasks_per_s(threads, in);
    const bench::Sample ours = bench::sample_of(kReps, [&] { return pool_map_tasks_per_s(pool, in); });
    // A few milliseconds each, at the scheduler's mercy: more repetitions.
    const bench::Sample threaded = bench::sample_of(4 * kReps, [&] { return threads_map_tasks_per_s(threads, in); });
    const bench::Sample py = python_sample("pool_map", {std::to_string(kMapTasks), "0", workers});
    const std::string name = "pool: map of 1e6 x -> x+1, default chunks, 2 workers";
    r.add(name, ours, "tasks/s", "Python Pool.map, default chunksize", py);
    r.add(name, ours, "tasks/s", "std::thread pool in-process, same chunks", threaded);
    r.target("pool: map 1e6 vs Python Pool.map (speed-up)", py.n > 0 ? ours.median / py.median : 0, ">=", 3);
    r.target("pool: map 1e6 vs in-process thread pool (moonshot)", threaded.n > 0 ? ours.median / threaded.median : 0,
             ">=", 0.5);

    (void)pool_apply_async_tasks_per_s(pool, 1000);
    std::vector<double> rates, cpu_us;  // tasks/s, and CPU microseconds per task (this process and the workers)
    for (int i = 0; i < kReps; ++i) {
      const double cpu0 = cpu_seconds(pool.worker_pids());
      rates.push_back(pool_apply_async_tasks_per_s(pool, kApplyTasks));
      cpu_us.push_back((cpu_seconds(pool.worker_pids()) - cpu0) * 1e6 / kApplyTasks);
    }
    const bench::Sample per_task = bench::summarize(rates);
    const std::string n = std::to_string(kApplyTasks);
    const bench::Sample py_map1 = python_sample("pool_map", {n, "1", workers});
    const bench::Sample py_apply = python_sample("pool_apply_async", {n, workers});
    r.add("pool: apply_async x 20k, then get each", per_task, "tasks/s", "Python Pool.map, chunksize=1", py_map1);
    r.add("pool: apply_async x 20k, then get each", per_task, "tasks/s", "Python apply_async x 20k", py_apply);
    r.target("pool: apply_async vs Python Pool.map(chunksize=1)", py_map1.n > 0 ? per_task.median / py_map1.median : 0,
             ">=", 10);
    // What a task costs in CPU (submit, dispatch, run, result, future), whatever share of the CPUs the run got.
    r.add("pool: apply_async x 20k, CPU time per task (parent + workers)", bench::summarize(cpu_us), "CPU us");
    pool.close();
    pool.join();
  }
  start_rows(r);
  cpu_bound_rows(r);
  replacement_rows(r);
}

bench::Group group("pool", run);

}  // namespace
