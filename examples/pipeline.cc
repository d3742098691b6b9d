// examples/pipeline.cc: a producer/consumer pipeline across processes with ipc/queue.
//
//   stage 1 (1 process)   reads lines (here: generated text) and puts them on a MessageQueue<std::string>
//   stage 2 (N workers)   get lines, count words, put {worker, line number, words} on a Queue<Result>
//   stage 3 (this one)    collects the results and prints totals
//
//   ./bazelw run //examples:pipeline -- [--workers N] [--lines N]
// Each stage closes the queue it feeds when done; a closed queue drains, then reports kClosed downstream.
#include <unistd.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "examples/args.h"
#include "ipc/base/process.h"
#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/segment/segment.h"

namespace {

struct Result {  // trivially copyable: travels through a Queue<Result> as raw bytes
  int worker;
  long line;
  long words;
};

int count_words(const std::string& line) {
  std::istringstream in(line);
  std::string w;
  int n = 0;
  while (in >> w) ++n;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  const examples::Args args(argc, argv, {{"workers", 2}, {"lines", 100000}});
  const int workers = static_cast<int>(args.get("workers"));
  const long lines = static_cast<long>(args.get("lines"));

  // One segment holds both queues; it is removed when `seg` (the creator's handle) goes out of scope.
  auto seg = ipc::Segment::create("pipeline_" + std::to_string(getpid()), 16 << 20);
  auto text = ipc::MessageQueue::create(seg, "lines", 256, 1024);
  auto results = ipc::Queue<Result>::create(seg, "results", 1024);

  // Stage 1: the producer, a child process. Children inherit the mapping, so the handles above work in them
  // unchanged (an unrelated process would use Segment::open + MessageQueue::open(seg, "lines")).
  std::vector<ipc::Process> children;
  children.push_back(ipc::Process::start([&] {
    for (long i = 0; i < lines; ++i) {
      std::string line = "line " + std::to_string(i) + std::string(static_cast<size_t>(i % 7), ' ') + " has words";
      if (text.put_value(line) != ipc::Outcome::kOk) break;
    }
    text.close();  // no more lines: workers drain and stop
  }, {.name = "producer"}));
  // Stage 2: the workers.
  for (int w = 0; w < workers; ++w) {
    children.push_back(ipc::Process::start([&, w] {
      std::string line;
      long n = 0;
      while (text.get_value(line) == ipc::Outcome::kOk) {
        if (results.put(Result{w, n++, count_words(line)}) != ipc::Outcome::kOk) break;
      }
    }, {.name = "worker-" + std::to_string(w)}));
  }
  // Stage 3: collect until the results queue is closed and drained. A thread closes it once every child has
  // ended, however it ended (a killed worker too), so the loop below never waits for results that cannot come.
  int failed = 0;
  std::thread closer([&] {
    for (ipc::Process& child : children) {
      if (child.join() != 0) {
        std::fprintf(stderr, "%s ended with %d\n", child.name().c_str(), *child.exitcode());
        ++failed;
      }
    }
    results.close();
  });
  std::vector<long> per_worker(static_cast<size_t>(workers));
  long total_words = 0, got = 0;
  Result r;
  while (results.get(r) == ipc::Outcome::kOk) {
    per_worker[static_cast<size_t>(r.worker)] += 1;
    total_words += r.words;
    ++got;
  }
  closer.join();
  std::printf("%ld lines, %ld words, lost to dead workers: %llu\n", got, total_words,
              static_cast<unsigned long long>(text.abandoned_count() + results.abandoned_count()));
  for (int w = 0; w < workers; ++w) std::printf("  worker %d: %ld lines\n", w, per_worker[static_cast<size_t>(w)]);
  return got == lines && failed == 0 ? 0 : 1;
}
