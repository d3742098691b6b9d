// Fuzz target (tests/fuzz.bzl, docs/fuzzing.md): the slot records that MessageQueue and Queue<T> read back out of
// shared memory which another process may have overwritten. Each input is a small program run on a fresh queue of
// 4 slots (the first byte picks a MessageQueue of messages up to 48 bytes, a Queue<uint64_t>, or a MessageQueue
// with a 3-page arena carrying messages up to 12 KiB, larger than 48 bytes out of line): put a message, try_get
// one (by copy or, with an arena, also by view), close, or overwrite 1 or 4 bytes anywhere in the queue's block
// (header, slot words, lengths, payloads, chunk records, arena page words). Property: no crash, overrun or hang;
// until the first overwrite, every try_get returns exactly the next message that was put (FIFO, whole); after it,
// a get returns an Outcome or throws StreamCorrupted (a slot length or chunk record that cannot be), nothing else.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/base/fuzz_program.h"
#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"

namespace {

using ipc::fuzz::numbered_message;
using ipc::fuzz::ProgramInput;

constexpr std::uint64_t kCapacity = 4;
constexpr std::uint64_t kMaxMessageBytes = 48;
constexpr std::uint64_t kArenaBytes = 3 * 4096;

[[noreturn]] void fail(const char* what) { ipc::fuzz::fuzz_failure("queue fuzz", what); }

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};


// Runs the program in `in` on `queue` (a MessageQueue or Queue<uint64_t>) built in `block` of `bytes` bytes.
template <typename Q>
void run(Q& queue, std::byte* block, std::size_t bytes, ProgramInput& in, bool arena = false) {
  std::deque<std::vector<std::byte>> expected;  // put and not yet got, while the memory is intact
  bool overwritten = false;
  std::uint64_t sent = 0;
  for (int step = 0; step < 64 && !in.done(); ++step) {
    switch (in.byte() % 5) {
      case 0: {  // put
        constexpr bool kBytes = std::is_same_v<Q, ipc::MessageQueue>;
        const bool room = expected.size() < kCapacity && !queue.closed();
        const std::size_t length = !kBytes ? sizeof(std::uint64_t)
                                   : arena ? in.number(2) % (kArenaBytes + 1)
                                           : in.byte() % (kMaxMessageBytes + 1);
        std::vector<std::byte> m = numbered_message(sent++, length);
        ipc::Outcome r;
        if constexpr (kBytes) {
          r = queue.try_put(m);
        } else {
          std::uint64_t v;
          std::memcpy(&v, m.data(), sizeof v);
          r = queue.try_put(v);
        }
        if (r == ipc::Outcome::kOk && !overwritten) expected.push_back(std::move(m));
        // Out of line, an intact queue may also be short of a free run of arena pages.
        const bool may_lack_pages = arena && length > kMaxMessageBytes && r == ipc::Outcome::kFull;
        if (!overwritten && (r == ipc::Outcome::kOk) != room && !(room && may_lack_pages)) {
          fail("try_put on an intact queue did not follow its capacity and closed state");
        }
        break;
      }
      case 1: {  // try_get
        std::vector<std::byte> got;
        ipc::Outcome r;
        try {
          if constexpr (std::is_same_v<Q, ipc::MessageQueue>) {
            if (arena && in.byte() % 2 == 0) {
              ipc::MessageView view;
              r = queue.try_get_view(view);
              got.assign(view.bytes().begin(), view.bytes().end());
            } else {
              r = queue.try_get(got);
            }
          } else {
            std::uint64_t v;
            r = queue.try_get(v);
            got.resize(sizeof v);
            std::memcpy(got.data(), &v, sizeof v);
          }
        } catch (const ipc::StreamCorrupted&) {
          if (!overwritten) fail("StreamCorrupted from a queue nobody overwrote");
          break;
        }
        if (overwritten) break;
        if (expected.empty()) {
          if (r != (queue.closed() ? ipc::Outcome::kClosed : ipc::Outcome::kEmpty)) fail("try_get on an empty queue");
        } else {
          if (r != ipc::Outcome::kOk || got != expected.front()) fail("try_get did not return the next message put");
          expected.pop_front();
        }
        break;
      }
      case 2:  // close
        queue.close();
        break;
      case 3: {  // overwrite one byte
        const std::uint32_t at = static_cast<std::uint32_t>(in.number(4)) % bytes;
        block[at] = static_cast<std::byte>(in.byte());
        overwritten = true;
        break;
      }
      case 4: {  // overwrite four bytes (a slot length, half a slot word, an index)
        const std::uint32_t at = static_cast<std::uint32_t>(in.number(4)) % (bytes - 3);
        const std::uint32_t value = static_cast<std::uint32_t>(in.number(4));
        std::memcpy(block + at, &value, sizeof value);
        overwritten = true;
        break;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ProgramInput in(std::span(data, size));
  // Odd: Queue<uint64_t>; 0 mod 4: MessageQueue; 2 mod 4: MessageQueue with an arena (older seeds keep their kind).
  const std::uint8_t first = in.byte();
  const int kind = first % 2 == 1 ? 1 : first % 4 == 0 ? 0 : 2;
  const ipc::MessageQueue::Options options{kCapacity, kMaxMessageBytes, kind == 2 ? kArenaBytes : 0};
  const std::size_t bytes = kind == 1 ? ipc::Queue<std::uint64_t>::bytes_needed(kCapacity)
                                      : ipc::MessageQueue::bytes_needed(options);
  const std::unique_ptr<std::byte, AlignedFree> block(static_cast<std::byte*>(std::aligned_alloc(64, bytes)));
  if (kind == 1) {
    auto queue = ipc::Queue<std::uint64_t>::create_at(block.get(), bytes, kCapacity);
    run(queue, block.get(), bytes, in);
  } else {
    ipc::MessageQueue queue = ipc::MessageQueue::create_at(block.get(), bytes, options);
    run(queue, block.get(), bytes, in, kind == 2);
  }
  return 0;
}
