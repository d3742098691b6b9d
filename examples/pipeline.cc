// examples/pipeline.cc: a producer/consumer pipeline across processes with ipc/queue.
//
//   stage 1 (1 process)   reads lines (here: generated text) and puts them on a MessageQueue<std::string>
//   stage 2 (N workers)   get lines, count words, put {worker, line number, words} on a Queue<Result>
//   stage 3 (this one)    collects the results and prints totals
//
// Run: ./bazelw run //examples:pipeline -- [workers] [lines]
// Each stage closes the queue it feeds when done; a closed queue drains, then reports kClosed downstream.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

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
  const int workers = argc > 1 ? std::atoi(argv[1]) : 2;
  const long lines = argc > 2 ? std::atol(argv[2]) : 100000;

  // One segment holds both queues; it is removed when `seg` (the creator's handle) goes out of scope.
  auto seg = ipc::Segment::create("pipeline_" + std::to_string(getpid()), 16 << 20);
  auto text = ipc::MessageQueue::create(seg, "lines", 256, 1024);
  auto results = ipc::Queue<Result>::create(seg, "results", 1024);

  // Stage 1: the producer. Children inherit the mapping, so the handles above work in them unchanged (an
  // unrelated process would use Segment::open + MessageQueue::open(seg, "lines")).
  if (fork() == 0) {
    for (long i = 0; i < lines; ++i) {
      std::string line = "line " + std::to_string(i) + std::string(static_cast<size_t>(i % 7), ' ') + " has words";
      if (text.put_value(line) != ipc::QueueResult::kOk) break;
    }
    text.close();  // no more lines: workers drain and stop
    _exit(0);
  }
  // Stage 2: the workers.
  for (int w = 0; w < workers; ++w) {
    if (fork() == 0) {
      std::string line;
      long n = 0;
      while (text.get_value(line) == ipc::QueueResult::kOk) {
        if (results.put(Result{w, n++, count_words(line)}) != ipc::QueueResult::kOk) break;
      }
      _exit(0);
    }
  }
  // Stage 3: collect until every worker has exited and the results queue is drained.
  std::vector<long> per_worker(static_cast<size_t>(workers));
  long total_words = 0, got = 0;
  int running = workers + 1;
  Result r;
  while (running > 0 || results.size_approx() > 0) {
    switch (results.get(r, std::chrono::milliseconds(50))) {
      case ipc::QueueResult::kOk:
        per_worker[static_cast<size_t>(r.worker)] += 1;
        total_words += r.words;
        ++got;
        break;
      default:  // timeout: see whether children finished
        while (waitpid(-1, nullptr, WNOHANG) > 0) --running;
        break;
    }
  }
  std::printf("%ld lines, %ld words, lost to dead workers: %llu\n", got, total_words,
              static_cast<unsigned long long>(text.abandoned_count() + results.abandoned_count()));
  for (int w = 0; w < workers; ++w) std::printf("  worker %d: %ld lines\n", w, per_worker[static_cast<size_t>(w)]);
  return got == lines ? 0 : 1;
}
