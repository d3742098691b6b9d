#include "ipc/pool/detail/pool_core.h"

#include <signal.h>
#include <string.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "ipc/base/error.h"
#include "ipc/base/poll.h"
#include "ipc/base/process.h"
#include "ipc/base/wait.h"
#include "ipc/numa/memory_policy.h"
#include "ipc/numa/topology.h"
#include "ipc/pipe/connection.h"
#include "ipc/pool/detail/start.h"
#include "ipc/shared/codec.h"

namespace ipc::detail {
namespace {

using Clock = std::chrono::steady_clock;

struct Task {
  uint64_t id = 0;
  std::vector<std::byte> message;
  std::shared_ptr<Completion> done;
  int node = -1;       // the node it should run on (its home), -1 anywhere
  bool steer = true;   // false: `node` is only counted, the task goes to any worker
  std::shared_ptr<HomeCount> count;
};

// A live worker as placement() reports it.
struct Live {
  int pid = -1;
  int node = -1;
  std::vector<int> cpus;
  Connection::RingPages queue;  // its pipe's rings
  Hello scratch{0, 0};  // its arena's base and capacity in its address space, once its Hello arrived
};

std::string describe_exit(int code) {
  if (code >= 0) return "exited with status " + std::to_string(code);
  const char* name = sigabbrev_np(-code);
  return "was killed by signal " + std::to_string(-code) + (name ? std::string(" (SIG") + name + ")" : "");
}

}  // namespace

// How much expected work may wait at a busy worker behind its running task, and at most how many tasks. The cap
// is high enough that a worker holding tiny tasks does not run dry between two looks of a coalescing supervisor.
constexpr std::chrono::nanoseconds kQueueBudget = std::chrono::milliseconds(1);
constexpr size_t kMaxInHand = 64;
// Tasks whose message is at most this long are sent in batches (send_chosen()); a batch is at most
// kMaxBatchBytes, and at most a quarter of the worker's ring, as much as may wait behind a running task.
constexpr size_t kMaxBatchedTaskBytes = 1024;
constexpr uint64_t kMaxBatchBytes = 64 * 1024;
// Results are collected in batches, every kCoalescePeriod, while tasks take less than kCoalesceBelow on average
// (State::coalescing).
constexpr std::chrono::microseconds kCoalesceBelow{20};
constexpr std::chrono::microseconds kCoalescePeriod{50};

struct PoolCore::State {
  struct Worker {
    std::unique_ptr<WorkerHandle> process;
    Connection conn;           // the pool's end of the worker's pipe
    size_t slot = 0;           // index into options->places (its node and CPUs)
    int node = -1;
    std::deque<Task> in_hand{};  // sent, no result yet; front() is the one running
    uint64_t held_bytes = 0;     // the sum of the in_hand tasks' message sizes
    size_t unsent = 0;           // the last in_hand tasks, chosen by dispatch() and not sent yet
    Clock::time_point front_started{};
    uint64_t tasks_sent = 0;   // against max_tasks_per_child: never send a worker more than it will run
    bool killed_for_time = false;
    uint64_t overdue_id = 0;   // killed_for_time: the id of the task that ran past its limit
    std::string stream_fault;  // why its result stream was found corrupt (drain()); empty: it was not
    bool conn_ended = false;   // end of stream seen: only the pidfd is waited on now
    // Its process exited, and its sentinel has not said so yet (a fork server's worker): no task goes to it.
    bool exited = false;
    // Started by the supervisor thread (a replacement), as the pool's child: its parent-death signal follows that
    // thread, which must not end before it has exited.
    bool child_of_supervisor = false;
    // kForkServer and kExec: false until the worker's ready message. Its first task's time limit counts from
    // then, not from the send: starting a program (exec) must not eat into the task's time.
    bool ready = true;

    // in_hand changes only through these, which keep held_bytes its sum.
    void hold(Task t) {
      held_bytes += t.message.size();
      in_hand.push_back(std::move(t));
    }
    Task release_front() {
      Task t = std::move(in_hand.front());
      in_hand.pop_front();
      held_bytes -= t.message.size();
      return t;
    }
    Task release_back() {
      Task t = std::move(in_hand.back());
      in_hand.pop_back();
      held_bytes -= t.message.size();
      return t;
    }
    std::deque<Task> release_all() {
      held_bytes = 0;
      return std::exchange(in_hand, {});
    }
    // The bytes of the tasks sent behind the running one.
    uint64_t waiting_bytes() const { return in_hand.empty() ? 0 : held_bytes - in_hand.front().message.size(); }
  };

  const CoreOptions* options = nullptr;
  mutable std::mutex mu;                 // guards everything below up to `workers`
  std::condition_variable finished_cv;
  std::deque<Task> pending;
  uint64_t next_id = 1;
  bool closed = false;
  bool terminated = false;
  bool finished = false;                 // the supervisor has returned
  uint64_t started = 0;
  std::vector<int> pids;                 // live workers, for worker_pids()
  std::vector<Live> live;                // live workers' placement, for placement()
  uint64_t hinted = 0, hinted_home = 0;  // tasks with a node hint, and those run on that node
  int wake_fd = -1;
  // A wake-up is on its way to the supervisor (written, not yet acted on): further submits need not write one.
  // Cleared by the supervisor under `mu` before it looks at `pending`, so a task queued after that writes anew.
  bool wake_armed = false;
  // The supervisor sleeps with every worker idle, able to take a task, and nothing queued (park()): until it wakes
  // (unpark()), a submit may hand its small task to an idle worker itself (dispatch_directly()), and close() may end
  // the workers' streams itself (end_streams_parked()), instead of waking the supervisor to do it: one thread wake-up
  // less on the way of each. That thread then owns the workers' state (`lent`), and a supervisor that wakes
  // meanwhile waits until it is handed back (`handed_back`).
  bool parked = false;
  bool lent = false;
  std::condition_variable handed_back;
  // kForkServer and kExec: the objects code addresses are relative to, and the initializer's portable address.
  std::vector<std::string> objects;
  uint64_t initializer_address = 0;

  std::thread supervisor;
  std::thread::id supervisor_id;  // set once, by the constructor (`supervisor` itself changes when joined)
  // Whoever joins `supervisor` and reaps the workers it left (join(), join_for(), terminate(), the exit handler),
  // which any thread may call, takes `joining` (under `mu`): one joins, the others wait on `joiner_left` and then
  // find it joined. Not `mu` held throughout, which the supervisor needs to finish; not a timed mutex, whose timed
  // lock ThreadSanitizer does not see.
  bool joining = false;
  std::condition_variable joiner_left;
  // Joins the supervisor, then waits until every worker it left has exited (killing them first when `kill`) and
  // reaps them. false: `deadline` passed first (a later call reaps the rest). Returns at once on the supervisor
  // thread itself (exit() or a join from a completion callback), which cannot wait for its own end.
  bool join_all(bool kill, const Deadline& deadline) {
    if (std::this_thread::get_id() == supervisor_id) return true;
    {
      std::unique_lock lock(mu);
      const auto free = [&] { return !joining; };
      if (deadline.is_never()) {
        joiner_left.wait(lock, free);
      } else if (!joiner_left.wait_for(lock, *deadline.remaining(), free)) {
        return false;
      }
      joining = true;
    }
    struct Leave {
      State& s;
      ~Leave() {
        {
          std::lock_guard lock(s.mu);
          s.joining = false;
        }
        s.joiner_left.notify_all();
      }
    } leave{*this};
    if (supervisor.joinable()) supervisor.join();
    return reap_workers(kill, deadline);
  }
  // The workers a supervisor that ended after close() left behind: their streams are ended and they hold no task,
  // so they are on their way out. Waiting for their exits here, on the joining thread, and not on the supervisor's,
  // takes one thread wake-up off close() + join() (worker exit -> joiner, not worker exit -> supervisor -> joiner).
  // REQUIRES: `joining` taken, the supervisor joined.
  bool reap_workers(bool kill, const Deadline& deadline) {
    if (kill) {
      for (auto& w : workers) w->process->kill();
    }
    while (!workers.empty()) {
      std::vector<pollfd> fds;
      for (auto& w : workers) fds.push_back({w->process->sentinel(), POLLIN, 0});
      if (poll_until(fds.data(), fds.size(), deadline) == 0) {
        if (deadline.expired()) return false;
        continue;
      }
      for (size_t i = fds.size(); i-- > 0;) {
        if (fds[i].revents == 0) continue;
        (void)reap(*workers[i]);  // it ended: returns at once
        forget_pid(workers[i]->process->pid());
        workers.erase(workers.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    return true;
  }
  // terminate()'s request, also made by the exit handler: the supervisor kills the workers and fails what is left.
  void ask_to_terminate() {
    {
      std::lock_guard lock(mu);
      terminated = true;
    }
    wake();
  }

  // Supervisor thread, just before it sleeps: parks when every worker is idle and may be sent a task by a submit
  // (dispatch_directly()) without the supervisor's help: no task time limit (the sleep's deadline would not cover
  // it), no replacement owed, every stream open and its worker ready.
  void park(bool closing) {
    bool idle = !closing && !options->task_timeout && workers.size() == options->workers;
    for (auto& w : workers) {
      idle = idle && w->ready && !w->conn_ended && !w->killed_for_time && !w->exited && w->in_hand.empty() &&
             (options->max_tasks_per_child == 0 || w->tasks_sent < options->max_tasks_per_child);
    }
    std::lock_guard lock(mu);
    parked = idle && pending.empty() && !closed && !terminated;
  }
  // A submit or close() that finds the supervisor parked takes the workers' state from it (`lent`): true when it
  // did; the caller then hands it back with a HandBack. REQUIRES: mu held.
  bool borrow_parked_workers() {
    if (!parked || lent) return false;
    parked = false;
    lent = true;
    return true;
  }
  // Supervisor thread, once awake: takes the workers' state back, after a direct dispatch under way.
  void unpark() {
    std::unique_lock lock(mu);
    parked = false;
    handed_back.wait(lock, [&] { return !lent; });
  }
  // Ends `lent` (taken under `mu` from a parked supervisor) when it goes out of scope, waking the supervisor when
  // the borrower left it something to do (a task still queued, a worker found gone; always: `wake_anyway`).
  struct HandBack {
    State& s;
    bool wake_anyway = false;
    ~HandBack() {
      bool needed = wake_anyway;
      {
        std::lock_guard lock(s.mu);
        s.lent = false;
        needed = needed || !s.pending.empty();
        for (auto& w : s.workers) needed = needed || w->conn_ended;
        needed = needed && !s.wake_armed;
        s.wake_armed = s.wake_armed || needed;
      }
      s.handed_back.notify_all();
      if (needed) s.wake();
    }
  };
  // A submit that found the supervisor parked (and took `lent`): sends the queued tasks to idle workers as the
  // supervisor would, then hands the workers back.
  void dispatch_directly() {
    HandBack hand_back{*this};
    // A worker that died since the supervisor slept is still listed, and a task sent to it would fail as if it
    // had been running: when any did, the task is left to the supervisor, which buries it first.
    std::vector<pollfd> fds;
    if (any_worker_exited(fds)) return;
    choose_tasks(/*may_spawn=*/false);
    send_chosen();
  }

  // close() of a parked pool (which took `lent`): every worker is idle, so it ends their task streams now (they exit
  // on their own), and wakes the supervisor, which closes its ends and returns. The workers hear of the close from
  // the closing thread, not through the supervisor's wake-up.
  void end_streams_parked() {
    HandBack hand_back{*this, /*wake_anyway=*/true};
    for (auto& w : workers) w->conn.end_sending();
  }

  // Supervisor thread only (and the constructor before it starts; while parked, a dispatch_directly() or
  // end_streams_parked()).
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::byte> result_buffer;
  std::vector<std::byte> batch_buffer;  // send_chosen()'s batch message
  // A running average of how long a task takes at a worker; starts at the queueing budget (kQueueBudget), so that
  // until tasks are seen to be short, a busy worker is sent one task to hold, not more.
  std::chrono::nanoseconds task_time = kQueueBudget;
  // dispatch() left an idle worker without a task it may steal yet: the supervisor looks again after steal_after().
  bool steal_later = false;
  // How long a worker's task in progress must have run before an idle worker of another node takes the tasks
  // meant for its node: eight times a usual task, and at least a few scheduler time slices (a worker that was
  // merely preempted is not held up).
  std::chrono::nanoseconds steal_after() const {
    return std::max<std::chrono::nanoseconds>(std::chrono::milliseconds(20), 8 * task_time);
  }

  void wake() {
    const uint64_t one = 1;
    // A full eventfd counter (2^64 - 2 wake-ups) cannot happen; EINTR is retried.
    (void)retry_on_eintr([&] { return ::write(wake_fd, &one, sizeof one); });
  }

  // Starts one worker in the first free slot. Called by the constructor and the supervisor (`by_supervisor`), never
  // by two threads at once. A placed worker's pipe rings are bound to its node and the worker pins itself to the
  // node's CPUs.
  void spawn(bool by_supervisor) {
    size_t slot = 0;
    while (std::any_of(workers.begin(), workers.end(), [&](const auto& w) { return w->slot == slot && !w->exited; })) {
      ++slot;
    }
    const SlotPlace* place = slot < options->places.size() ? &options->places[slot] : nullptr;
    PipeOptions po;
    po.ring_bytes = options->pipe_bytes;
    if (place && place->node >= 0 && numa::Topology::discover().node(place->node).has_memory) {
      po.policy = numa::MemoryPolicy::bind({place->node});
    }
    // A memfd only when the worker's end is handed over (kForkServer, kExec). A forked worker inherits the
    // anonymous mapping, whose pages are allocated as they are first written: a pool that starts, runs a few tasks
    // and stops pays for a few pages of its rings, not for all of them.
    po.transferable = options->start_method != StartMethod::kFork;
    auto [pool_end, worker_end] = Pipe(po);
    Connection::RingPages queue = pool_end.ring_pages();
    WorkerSetup setup;
    setup.cpus = place ? place->cpus : std::vector<int>{};
    setup.max_tasks_per_child = options->max_tasks_per_child;
    setup.scratch_bytes = options->scratch_bytes;
    if (po.policy.mode() == numa::Mode::kBind) setup.scratch_node = place->node;  // the node has memory
    const std::string name = options->name + "-worker-" + std::to_string(started + 1);
    std::unique_ptr<WorkerHandle> process;
    bool setup_failed = false;
    if (options->start_method == StartMethod::kFork) {
      setup.initializer = options->initializer;
      // The worker's first wait asks whether spinning pays; the verdict is cached per process for a few
      // milliseconds, and a fork inherits the cache: asked here, at most once per period in the pool's process,
      // it spares each worker a read of /proc/loadavg and a sched_getaffinity before its first task.
      (void)spinning_pays();
      ProcessOptions popts;
      popts.daemon = true;  // a pool's workers die with it, also when it is SIGKILLed
      popts.name = name;
      Connection* mine = &worker_end;
      Connection* theirs = &pool_end;
      process = process_worker(Process::start(
          [this, mine, theirs, &setup] {
            // The child holds copies of every descriptor of the pool: drop all but its own end, so that the pool
            // sees end of stream on each pipe as soon as that pipe's worker is gone.
            theirs->close_descriptors_in_child(/*keep_memory=*/true);  // the memory is its own end's too
            for (auto& other : workers) other->conn.close_descriptors_in_child();
            ::close(wake_fd);
            return run_worker(*mine, setup, nullptr);
          },
          popts));
      worker_end.release_to_child();  // the child's copy keeps it open: nothing for the pool's end to hear of
    } else {
      // The worker gets its end as descriptors, and its setup (code addresses made portable) as the first message.
      setup.initializer_address = initializer_address;
      setup.objects = objects;
      process = start_remote_worker(options->start_method, worker_end.handoff(), name);
      worker_end.close();
      // kClosed: it died at once; its sentinel says how, and bury() deals with it.
      setup_failed = pool_end.send_bytes(setup_message(setup)) != Outcome::kOk;
    }
    auto w = std::make_unique<Worker>(Worker{std::move(process), std::move(pool_end)});
    w->slot = slot;
    w->conn_ended = setup_failed;
    w->ready = options->start_method == StartMethod::kFork;
    w->child_of_supervisor = by_supervisor && options->start_method != StartMethod::kForkServer;
    w->node = place ? place->node : -1;
    {
      std::lock_guard lock(mu);
      ++started;
      pids.push_back(w->process->pid());
      live.push_back({w->process->pid(), w->node, place ? place->cpus : std::vector<int>{}, std::move(queue)});
    }
    workers.push_back(std::move(w));
  }

  void forget_pid(int pid) {
    std::lock_guard lock(mu);
    pids.erase(std::remove(pids.begin(), pids.end(), pid), pids.end());
    std::erase_if(live, [&](const Live& l) { return l.pid == pid; });
  }

  // Completion callbacks are user code run on this thread: a throwing one must not take the pool down with it.
  static void complete(Task& t, std::span<const std::byte> result) {
    try {
      t.done->succeed(result);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ipc::Pool: a completion callback threw %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "ipc::Pool: a completion callback threw something that is not a std::exception\n");
    }
  }
  static void complete(Task& t, Raise failure) {
    try {
      t.done->fail(std::move(failure));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ipc::Pool: an error callback threw %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "ipc::Pool: an error callback threw something that is not a std::exception\n");
    }
  }

  // `now`: when the result was read (drain()).
  void handle_result(Worker& w, std::span<const std::byte> msg, Clock::time_point now) {
    if (msg.size() >= kResultHeaderBytes && load_field<uint64_t>(msg.data()) == kReadyId) {
      // Its Hello (no task has id 0): set up, and where its arena is.
      if (!w.ready) {
        w.ready = true;
        w.front_started = now;
      }
      Hello hello{0, 0};
      try {
        hello = Codec<Hello>::decode(msg.subspan(kResultHeaderBytes));
      } catch (const std::exception&) {
        w.process->kill();  // not a worker of this pool's binary: stop trusting it
        return;
      }
      std::lock_guard lock(mu);
      for (auto& l : live) {
        if (l.pid == w.process->pid()) l.scratch = hello;
      }
      return;
    }
    if (msg.size() < kResultHeaderBytes || w.in_hand.empty() ||
        load_field<uint64_t>(msg.data()) != w.in_hand.front().id) {
      // Not the answer to the task it holds: the worker's stream is out of step; stop trusting it.
      w.process->kill();
      return;
    }
    Task t = w.release_front();
    // The task's time at the worker (from its send to an idle worker, or from the previous result), into the
    // running estimate that decides how many tasks a busy worker may hold (dispatch()).
    task_time += (std::chrono::duration_cast<std::chrono::nanoseconds>(now - w.front_started) - task_time) / 8;
    w.front_started = now;
    if (t.node >= 0 && t.steer) {
      std::lock_guard lock(mu);
      ++hinted;
      hinted_home += t.node == w.node ? 1 : 0;
    }
    if (t.count) {
      // relaxed: plain counters; the map reads them after its futures completed (which orders them).
      if (t.node >= 0 && t.node == w.node) t.count->at_home.fetch_add(1, std::memory_order_relaxed);
      t.count->tasks.fetch_add(1, std::memory_order_relaxed);
    }
    const auto payload = msg.subspan(kResultHeaderBytes);
    if (msg[8] == std::byte{0}) {
      complete(t, payload);
      return;
    }
    Raise failure;
    try {
      auto [type, what] = Codec<std::pair<std::string, std::string>>::decode(payload);
      failure = raise_as<TaskError>(std::move(type), std::move(what));
    } catch (const std::exception& e) {
      failure =
          raise_as<TaskError>(std::string("ipc::CodecError"), std::string("unreadable failure report: ") + e.what());
    }
    complete(t, std::move(failure));
  }

  // Reads every complete result the worker has sent. A stream found corrupt (a worker that overwrote its rings)
  // ends there: the worker is killed, and bury() fails the task it was running, saying why.
  void drain(Worker& w) {
    std::optional<Clock::time_point> now;
    while (!w.conn_ended && w.conn.poll()) {
      Outcome r;
      try {
        r = w.conn.recv_bytes(result_buffer, std::chrono::seconds(0));
      } catch (const StreamCorrupted& e) {
        w.stream_fault = e.what();
        w.conn_ended = true;
        w.process->kill();
        break;
      }
      if (r == Outcome::kOk) {
        // With a task time limit, each result's own time: the next task's limit counts from it, and a callback
        // of an earlier result may have run long. Otherwise only the running average of task time uses it.
        if (!now || options->task_timeout) now = Clock::now();
        handle_result(w, result_buffer, *now);
      } else if (r == Outcome::kClosed) {
        w.conn_ended = true;
      } else {
        break;
      }
    }
  }

  // Joins a worker whose process ended (its pidfd or sentinel said so: this returns at once): its exit code, or
  // nullopt when the status is gone (a program that ignores SIGCHLD has its children reaped by the kernel), with
  // why in `why_lost`.
  static std::optional<int> reap(Worker& w, std::string* why_lost = nullptr) {
    try {
      return w.process->join();
    } catch (const SystemError& e) {
      if (why_lost) *why_lost = e.what();
      return std::nullopt;
    }
  }

  // The worker's process ended: collect what it finished, fail what it was running, put back what it had not
  // started.
  void bury(size_t index) {
    Worker& w = *workers[index];
    drain(w);
    const int pid = w.process->pid();
    std::string status_lost;
    const std::optional<int> code = reap(w, &status_lost);
    // A worker that leaves of its own accord does so between tasks, holding none: its task quota reached (it is
    // never sent more), or end of stream. One that leaves holding tasks was running the oldest: it died, or it
    // ended inside the task (an exit() there, even with status 0), or its result could not be sent.
    if (!w.in_hand.empty()) {
      Task running = w.release_front();
      Raise failure;
      if (w.killed_for_time && running.id == w.overdue_id) {
        failure = raise_as<TaskTimeout>(
            "the task ran longer than its timeout of " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(*options->task_timeout).count()) +
            " ms; its worker (pid " + std::to_string(pid) + ") was killed and replaced");
      } else {
        std::string what = "worker " + std::to_string(pid) + " " +
                           (code ? describe_exit(*code) : "ended, its exit status lost (" + status_lost + ")") +
                           " while running this task";
        if (!w.stream_fault.empty()) what += " (its result stream was corrupt: " + w.stream_fault + ")";
        if (w.killed_for_time) {
          // The overdue task's result came in between the supervisor's last look and the kill: that task got its
          // result, and the one after it, which had barely started, lost its worker.
          what += " (the pool killed it because the task before this one ran past its timeout, and that task "
                  "finished as it was killed)";
        } else if (code == 0) {
          what += " (inside the task, by exit(), or it could not send the result)";
        }
        if (const auto& ex = w.process->exception()) what += " (" + ex->type_name + ": " + ex->message + ")";
        failure = raise_as<WorkerLost>(pid, code.value_or(-1), what);
      }
      complete(running, std::move(failure));
    }
    {
      std::lock_guard lock(mu);
      std::deque<Task> held = w.release_all();
      for (auto it = held.rbegin(); it != held.rend(); ++it) pending.push_front(std::move(*it));
    }
    forget_pid(pid);
    workers.erase(workers.begin() + static_cast<std::ptrdiff_t>(index));
  }

  // Hands queued tasks to workers with room, starting replacements while there is work and fewer workers than
  // asked for. More tasks go to a busy worker only while those waiting behind its running task fit a quarter of
  // its pipe's ring, so a send never blocks on a worker that is itself blocked sending a large result (it has
  // read its running task whole by then, so only the waiting ones are in the ring). Locality: a worker takes the
  // first queued task meant for its node (or for anywhere); only when there is none, and it is idle, does it take
  // (steal) one meant for another node.
  void dispatch() {
    bury_ended_idle_workers();
    choose_tasks(/*may_spawn=*/true);
    send_chosen();
  }

  // Polls every worker's exit_fd() at once (no wait) into `fds`, in the order of `workers`; true when any exited.
  bool any_worker_exited(std::vector<pollfd>& fds) const {
    fds.clear();
    for (auto& w : workers) fds.push_back({w->process->exit_fd(), POLLIN, 0});
    return retry_on_eintr([&] { return ::poll(fds.data(), fds.size(), 0); }) != 0;
  }
  // A worker that died since the supervisor last waited is still listed, and a task sent to it would fail as if
  // it had been running. Before queued tasks go to idle workers (where a task that waits is sent at once), the
  // exited ones are buried, or only marked while their status is not known yet: one poll, only then.
  void bury_ended_idle_workers() {
    if (std::none_of(workers.begin(), workers.end(), [](const auto& w) { return w->in_hand.empty(); })) return;
    {
      std::lock_guard lock(mu);
      if (pending.empty()) return;
    }
    std::vector<pollfd> fds;
    if (!any_worker_exited(fds)) return;
    for (size_t i = fds.size(); i-- > 0;) {
      if (fds[i].revents == 0) continue;
      if (workers[i]->process->exit_fd() == workers[i]->process->sentinel()) {
        bury(i);
      } else {
        workers[i]->exited = true;  // its sentinel buries it
      }
    }
  }

  // dispatch()'s choices: each task is taken from `pending` into a worker's in_hand, to be sent by send_chosen().
  // may_spawn = false (a submit dispatching directly): a task that would need a new worker stays queued.
  void choose_tasks(bool may_spawn) {
    steal_later = false;
    const auto now = Clock::now();  // one look at the clock serves every choice of this round
    const uint64_t small = options->pipe_bytes / 4;
    auto can_take = [&](const Worker& w) {
      return !w.conn_ended && !w.killed_for_time && !w.exited &&
             (options->max_tasks_per_child == 0 || w.tasks_sent < options->max_tasks_per_child);
    };
    // The queued task `w` should run next (pending.end() when none fits). REQUIRES: mu held.
    auto pick = [&](const Worker& w, bool busy) {
      constexpr size_t kLookAhead = 256;  // bounded: a long queue of other nodes' tasks costs no more than this
      const uint64_t waiting_bytes = w.waiting_bytes();
      auto fits = [&](const Task& t) { return !busy || waiting_bytes + t.message.size() <= small; };
      size_t looked = 0;
      for (auto it = pending.begin(); it != pending.end() && looked < kLookAhead; ++it, ++looked) {
        if ((it->node < 0 || !it->steer || it->node == w.node) && fits(*it)) return it;
      }
      // Only an idle worker steals, and only while every worker of the task's node is held up (its task in
      // progress older than steal_after(), or unable to take work): otherwise a worker of its node is about to take
      // it, and a node whose workers are merely a little slower would lose its chunks to the other node's.
      if (busy || !fits(pending.front())) return pending.end();
      const auto now = Clock::now();
      for (auto& o : workers) {
        if (o->node == pending.front().node && can_take(*o) &&
            (o->in_hand.empty() || now - o->front_started <= steal_after())) {
          steal_later = true;  // look again when that worker's task is no longer young (next_deadline)
          return pending.end();
        }
      }
      return pending.begin();
    };
    for (;;) {
      Task t;
      Worker* target = nullptr;
      {
        std::unique_lock lock(mu);
        if (pending.empty() || terminated) return;
        std::deque<Task>::iterator chosen = pending.end();
        auto choose = [&](bool busy) {
          // More tasks go to a busy worker (so that it finds its next task waiting, and results come back in
          // batches) only while what it holds is expected to take less than kQueueBudget by the running average,
          // and its task in progress is younger than that: a task queued behind a long one would wait while
          // another worker may soon be free. Among busy workers, the one holding least, then started last.
          for (auto& w : workers) {
            if (!can_take(*w) || (busy ? w->in_hand.empty() || w->in_hand.size() >= kMaxInHand ||
                                             task_time * static_cast<int64_t>(w->in_hand.size()) > kQueueBudget
                                       : !w->in_hand.empty())) {
              continue;
            }
            if (busy && (now - w->front_started > kQueueBudget ||
                         (target && (w->in_hand.size() > target->in_hand.size() ||
                                     (w->in_hand.size() == target->in_hand.size() &&
                                      w->front_started < target->front_started))))) {
              continue;
            }
            if (auto it = pick(*w, busy); it != pending.end()) {
              target = w.get();
              chosen = it;
              if (!busy) return;
            }
          }
        };
        choose(false);
        if (!target) {
          // Replace dead workers before queueing work behind live ones. Workers that reached their quota are on
          // their way out and do not count against the target.
          size_t usable = 0;
          for (auto& w : workers) usable += can_take(*w) || !w->in_hand.empty() ? 1 : 0;
          if (usable < options->workers) {
            if (!may_spawn) return;
            lock.unlock();
            try {
              spawn(/*by_supervisor=*/true);
            } catch (const std::exception& e) {
              // No worker can be started now (the fork server is gone, say, as the program exits): the queued tasks
              // fail with the reason instead of waiting for ever, and the supervisor thread lives on.
              fail_pending("no worker could be started to run this task: " + std::string(e.what()));
              return;
            }
            continue;
          }
          choose(true);
        }
        if (!target) return;
        t = std::move(*chosen);
        pending.erase(chosen);
      }
      if (target->in_hand.empty()) target->front_started = now;
      target->hold(std::move(t));
      ++target->tasks_sent;
      ++target->unsent;
    }
  }

  // Sends each worker the tasks choose_tasks() gave it: a run of small ones as one batch message (one send, and
  // at most one wake-up of a worker that sleeps, for the run, not one each), any other alone.
  void send_chosen() {
    const uint64_t batch_limit = std::min<uint64_t>(options->pipe_bytes / 4, kMaxBatchBytes);
    for (auto& w : workers) {
      if (w->unsent == 0) continue;
      size_t at = w->in_hand.size() - w->unsent;
      w->unsent = 0;
      while (at < w->in_hand.size()) {
        size_t end = at;
        uint64_t bytes = kBatchHeaderBytes;
        while (end < w->in_hand.size() && w->in_hand[end].message.size() <= kMaxBatchedTaskBytes &&
               bytes + batch_entry_bytes(w->in_hand[end].message.size()) <= batch_limit) {
          bytes += batch_entry_bytes(w->in_hand[end].message.size());
          ++end;
        }
        Outcome sent;
        if (end - at >= 2) {
          batch_buffer.assign(bytes, std::byte{0});
          store_field(batch_buffer.data(), kBatchId);
          size_t put = kBatchHeaderBytes;
          for (size_t i = at; i < end; ++i) {
            const std::vector<std::byte>& m = w->in_hand[i].message;
            store_field(batch_buffer.data() + put, uint64_t{m.size()});
            std::memcpy(batch_buffer.data() + put + 8, m.data(), m.size());
            put += batch_entry_bytes(m.size());
          }
          sent = w->conn.send_bytes(batch_buffer);
        } else {
          end = at + 1;
          sent = w->conn.send_bytes(w->in_hand[at].message);
        }
        if (sent != Outcome::kOk) {
          // The worker is gone; its pidfd will say so. The tasks from `at` on were never received: queue them again,
          // in their order, ahead of the others.
          w->conn_ended = true;
          std::lock_guard lock(mu);
          while (w->in_hand.size() > at) {
            --w->tasks_sent;
            pending.push_front(w->release_back());
          }
          break;
        }
        at = end;
      }
    }
  }

  void kill_overdue(Clock::time_point now) {
    if (!options->task_timeout) return;
    auto overdue = [&](const Worker& w) {
      return w.ready && !w.in_hand.empty() && !w.killed_for_time && now - w.front_started >= *options->task_timeout;
    };
    for (auto& w : workers) {
      if (!overdue(*w)) continue;
      // The supervisor may have been busy (in a completion callback, say) while the task ended: its result, read
      // now, completes it, and the next task's time counts from now. Without this look, the worker was killed and
      // the next task, batched behind the finished one, failed with TaskTimeout a moment after it started.
      drain(*w);
      if (!overdue(*w)) continue;
      w->killed_for_time = true;
      w->overdue_id = w->in_hand.front().id;
      w->process->kill();
    }
  }

  std::optional<std::chrono::nanoseconds> next_deadline(Clock::time_point now) const {
    std::optional<std::chrono::nanoseconds> wait;
    if (steal_later) wait = steal_after();
    if (!options->task_timeout) return wait;
    for (auto& w : workers) {
      if (!w->ready || w->in_hand.empty() || w->killed_for_time) continue;
      // Subtracted first: the limit plus the start could overflow (a limit of nanoseconds::max(), say).
      const auto ran = std::chrono::duration_cast<std::chrono::nanoseconds>(now - w->front_started);
      const auto left = std::max<std::chrono::nanoseconds>(std::chrono::nanoseconds(0), *options->task_timeout - ran);
      if (!wait || left < *wait) wait = left;
    }
    return wait;
  }

  // Whether the supervisor collects results by looking every kCoalescePeriod instead of sleeping until one
  // arrives: while tasks are tiny (the running average under kCoalesceBelow) and every worker holds several, one
  // wake-up per result would cost more than the tasks themselves. A result then waits at most a period. A task in
  // progress for longer than kQueueBudget ends it: a long task is not polled for.
  bool coalescing(Clock::time_point now) const {
    if (task_time >= kCoalesceBelow || workers.empty()) return false;
    for (auto& w : workers) {
      if (w->conn_ended || w->in_hand.size() < 2 || now - w->front_started > kQueueBudget) return false;
    }
    return true;
  }

  // Fails every queued task (not those the workers hold) with PoolTerminated saying `why`.
  void fail_pending(const std::string& why) {
    std::deque<Task> queued;
    {
      std::lock_guard lock(mu);
      queued.swap(pending);
    }
    for (auto& t : queued) complete(t, raise_as<PoolTerminated>(why));
  }

  // Fails every task, queued or held by a worker, with PoolTerminated.
  void fail_everything() {
    {
      std::lock_guard lock(mu);
      for (auto& w : workers) {
        for (auto& t : w->release_all()) pending.push_back(std::move(t));
      }
    }
    fail_pending("the pool was terminated before the task finished");
  }

  void supervise() {
    unpark();  // the constructor parked it: the first tasks may have gone to the workers before this thread ran
    for (;;) {
      bool closing, terminating;
      {
        std::lock_guard lock(mu);
        closing = closed;
        terminating = terminated;
        wake_armed = false;  // dispatch() below sees every task queued so far
      }
      if (terminating) {
        for (auto& w : workers) w->process->kill();
        for (auto& w : workers) (void)reap(*w);
        fail_everything();
        workers.clear();
        std::lock_guard lock(mu);
        pids.clear();
        live.clear();
        break;
      }
      dispatch();
      if (closing) {
        bool idle;
        {
          std::lock_guard lock(mu);
          idle = pending.empty();
        }
        for (auto& w : workers) idle = idle && w->in_hand.empty();
        if (idle) {
          // Every task is done: end each worker's stream; they exit, and the thread that joins the pool waits for
          // that (reap_workers()). Except for the workers this thread started: the parent-death signal that makes
          // them die with the pool follows this thread, and would kill them on their way out (their last output
          // not yet flushed) if it ended first. It waits for those, as their pidfds say, and then leaves.
          for (auto& w : workers) w->conn.close(), w->conn_ended = true;
          if (std::none_of(workers.begin(), workers.end(), [](const auto& w) { return w->child_of_supervisor; })) {
            break;
          }
        }
      }
      std::vector<Connection*> conns;
      std::vector<int> sentinels{wake_fd};
      for (auto& w : workers) {
        if (!w->conn_ended) conns.push_back(&w->conn);
        sentinels.push_back(w->process->sentinel());
      }
      WaitReady ready;
      const bool batched = coalescing(Clock::now());
      if (batched || conns.empty()) {
        // Workers hold tiny tasks: take their results in batches, every kCoalescePeriod, rather than being woken
        // by each. The wait is on the sentinels only (a submit's wake-up, a worker's end), so no worker rings.
        // Also with no stream to watch (every worker's ended: the pool is closing and waits for their exits):
        // wait() would flag nothing asleep, yet pay the membarrier (heavy fence) that makes a flag visible.
        std::optional<std::chrono::nanoseconds> period = next_deadline(Clock::now());
        if (batched && (!period || *period > kCoalescePeriod)) period = kCoalescePeriod;
        std::vector<pollfd> fds;
        for (int s : sentinels) fds.push_back({s, POLLIN, 0});
        if (poll_until(fds.data(), fds.size(), Deadline::from(period)) > 0) {
          for (const pollfd& p : fds) {
            if (p.revents) ready.sentinels.push_back(p.fd);
          }
        }
      } else {
        const auto deadline = next_deadline(Clock::now());
        park(closing);  // last: from here until unpark(), a submit may change the workers' state
        ready = wait(conns, sentinels, deadline);
        unpark();
      }
      // The futures completed from here to the end of this turn release their waiters together, before the next
      // wait: a thread waiting on the first of them is woken once, and finds the others finished too.
      DeferredWakes wakes;
      for (auto& w : workers) {
        if (batched || std::find(ready.connections.begin(), ready.connections.end(), &w->conn) !=
                           ready.connections.end()) {
          drain(*w);
        }
      }
      for (int fd : ready.sentinels) {
        if (fd == wake_fd) {
          uint64_t count;
          (void)retry_on_eintr([&] { return ::read(wake_fd, &count, sizeof count); });
          continue;
        }
        for (size_t i = 0; i < workers.size(); ++i) {
          if (workers[i]->process->sentinel() == fd) {
            bury(i);
            break;
          }
        }
      }
      kill_overdue(Clock::now());
    }
    std::lock_guard lock(mu);
    finished = true;
    finished_cv.notify_all();
  }
};

namespace {

// The pools whose supervisor runs in this process (their owner's pid: a fork inherits the list, not the pools).
// Never destroyed: the exit handler that reads it may run after every static destructor.
struct LivePools {
  std::mutex mu;
  std::vector<std::pair<pid_t, PoolCore*>> cores;
};
LivePools& live_pools() {
  static auto* pools = new LivePools;
  return *pools;
}

// How long exit() waits for a pool's supervisor to end its workers: it only kills and reaps them, unless a
// completion callback it runs blocks.
constexpr auto kExitWait = std::chrono::seconds(10);

}  // namespace

void PoolCore::end_live_pools_at_exit() {
  LivePools& live = live_pools();
  // Held throughout: a pool destroyed meanwhile by another thread waits here before it goes.
  std::lock_guard lock(live.mu);
  for (auto [owner, core] : live.cores) {
    if (owner == ::getpid()) core->end_at_exit();
  }
}

void PoolCore::end_at_exit() {
  state_->ask_to_terminate();
  // exit() called by a completion callback, on the supervisor thread itself: it cannot finish while we wait.
  if (state_->supervisor_id == std::this_thread::get_id()) return;
  std::unique_lock lock(state_->mu);
  // Joined only once it has finished: a supervisor held up by a callback past kExitWait is left to the exit.
  if (state_->finished_cv.wait_for(lock, kExitWait, [&] { return state_->finished; })) {
    lock.unlock();
    (void)state_->join_all(/*kill=*/true, Deadline::never());
  }
}

PoolCore::PoolCore(CoreOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()), owner_pid_(::getpid()) {
  if (options_.workers == 0) throw InvalidArgument("Pool: the worker count must be at least 1");
  state_->options = &options_;
  if (options_.start_method != StartMethod::kFork) {
    check_start_method(options_.start_method);
    state_->objects = loaded_objects();
    if (options_.initializer) {
      // Only code crosses to a worker that is not a fork of this process: a plain function, not a closure.
      auto* fn = options_.initializer.target<void (*)()>();
      if (!fn) {
        throw InvalidArgument(
            "Pool: with StartMethod::kForkServer or kExec the initializer must be a plain function (a void() "
            "function, or +[] { ... } for a captureless lambda): a closure's state cannot reach the workers");
      }
      state_->initializer_address = portable_code_address(reinterpret_cast<uintptr_t>(*fn), state_->objects);
    }
  }
  state_->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (state_->wake_fd < 0) throw_errno("Pool: eventfd");
  try {
    for (unsigned i = 0; i < options_.workers; ++i) state_->spawn(/*by_supervisor=*/false);
  } catch (...) {
    state_->workers.clear();  // kills and reaps those already started
    ::close(state_->wake_fd);
    throw;
  }
  // Parked from the start: the first submit sends its task itself rather than wait for this new thread to run.
  state_->park(/*closing=*/false);
  state_->supervisor = std::thread([s = state_.get()] { s->supervise(); });
  state_->supervisor_id = state_->supervisor.get_id();
  // exit() with this pool alive (a static Pool, one leaked, a return from main while another thread holds one, or
  // an exit() inside a function that owns one) ends it first, as Python's multiprocessing ends its pools' workers
  // at exit: its supervisor must not go on (replacing a worker, say) while static destructors run.
  static std::once_flag registered;
  std::call_once(registered, [] { std::atexit(end_live_pools_at_exit); });
  std::lock_guard lock(live_pools().mu);
  live_pools().cores.emplace_back(::getpid(), this);
}

PoolCore::~PoolCore() {
  if (::getpid() != owner_pid_) {
    // A forked child's copy: the workers, their rings and the supervisor are the parent's. Nothing here may be
    // touched (the copied supervisor thread object names a thread this process does not have): leave it.
    (void)state_.release();
    return;
  }
  {
    std::lock_guard lock(live_pools().mu);
    std::erase_if(live_pools().cores, [&](const auto& entry) { return entry.second == this; });
  }
  if (state_->supervisor.joinable()) terminate();
  ::close(state_->wake_fd);
}

void PoolCore::check_owner(const char* what) const {
  if (::getpid() != owner_pid_) {
    throw StateError(std::string("Pool::") + what + ": the pool belongs to process " + std::to_string(owner_pid_) +
                     ", which made it; this is process " + std::to_string(::getpid()) +
                     " (a forked child cannot use its parent's pool)");
  }
}

void PoolCore::submit(Invoker invoker, uintptr_t callable, std::vector<std::byte> message,
                      std::shared_ptr<Completion> done, int node, bool steer, std::shared_ptr<HomeCount> count) {
  check_owner("submit");
  if (message.size() < kTaskHeaderBytes) throw InvalidArgument("Pool: a task message without room for its header");
  uint64_t invoker_word = reinterpret_cast<uintptr_t>(invoker);
  if (options_.start_method != StartMethod::kFork) {
    // The workers are not forks of this process: its addresses mean nothing there; send (object, offset).
    invoker_word = portable_code_address(invoker_word, state_->objects);
    callable = portable_code_address(callable, state_->objects);
  }
  bool wake = false, direct = false;
  {
    std::lock_guard lock(state_->mu);
    if (state_->terminated) throw StateError("Pool: the pool was terminated");
    if (state_->closed) throw StateError("Pool: the pool is closed; no new tasks");
    const uint64_t id = state_->next_id++;
    store_field(message.data(), id);
    store_field(message.data() + 8, invoker_word);
    store_field(message.data() + 16, callable);
    // Small: its send never waits for the worker to make room.
    direct = message.size() <= kMaxBatchedTaskBytes && state_->borrow_parked_workers();
    state_->pending.push_back(Task{id, std::move(message), std::move(done), node, steer, std::move(count)});
    if (!direct) {
      wake = !state_->wake_armed;
      state_->wake_armed = true;
    }
  }
  if (direct) state_->dispatch_directly();
  if (wake) state_->wake();
}

void PoolCore::close() {
  check_owner("close");
  bool end_streams = false;
  {
    std::lock_guard lock(state_->mu);
    end_streams = !state_->closed && !state_->terminated && state_->borrow_parked_workers();
    state_->closed = true;
  }
  if (end_streams) {
    state_->end_streams_parked();  // wakes the supervisor when done
  } else {
    state_->wake();
  }
}

void PoolCore::terminate() {
  check_owner("terminate");
  state_->ask_to_terminate();
  (void)state_->join_all(/*kill=*/true, Deadline::never());
}

void PoolCore::join() {
  check_owner("join");
  {
    std::lock_guard lock(state_->mu);
    if (!state_->closed && !state_->terminated) throw StateError("Pool::join: call close() or terminate() first");
  }
  (void)state_->join_all(/*kill=*/false, Deadline::never());
}

bool PoolCore::join_for(std::chrono::nanoseconds timeout) {
  check_owner("join");
  const Deadline deadline = Deadline::after(timeout);
  std::unique_lock lock(state_->mu);
  if (!state_->closed && !state_->terminated) throw StateError("Pool::join: call close() or terminate() first");
  const auto finished = [&] { return state_->finished; };
  if (const auto at = deadline.time_point()) {
    if (!state_->finished_cv.wait_until(lock, *at, finished)) return false;
  } else {
    state_->finished_cv.wait(lock, finished);
  }
  lock.unlock();
  return state_->join_all(/*kill=*/false, deadline);
}

std::vector<int> PoolCore::worker_pids() const {
  std::lock_guard lock(state_->mu);
  return state_->pids;
}

std::vector<PoolCore::WorkerPlace> PoolCore::placement() const {
  std::vector<Live> live;
  {
    std::lock_guard lock(state_->mu);
    live = state_->live;
  }
  // The page queries outside the lock: they take a system call per 4096 pages.
  std::vector<WorkerPlace> places;
  for (const auto& l : live) {
    WorkerPlace p{l.pid, l.node, l.cpus, l.queue.now(), {}};
    if (l.scratch.second != 0) {
      try {
        p.scratch_pages = numa::page_placement_in(l.pid, l.scratch.first, l.scratch.second);
      } catch (const SystemError&) {
        // The worker ended since the copy above (ESRCH): it is reported as it was, without arena pages.
      }
    }
    places.push_back(std::move(p));
  }
  return places;
}

std::pair<uint64_t, uint64_t> PoolCore::hinted_at_home() const {
  std::lock_guard lock(state_->mu);
  return {state_->hinted_home, state_->hinted};
}

uint64_t PoolCore::workers_started() const {
  std::lock_guard lock(state_->mu);
  return state_->started;
}

}  // namespace ipc::detail
