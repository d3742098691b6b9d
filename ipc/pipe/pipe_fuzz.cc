// Fuzz target (tests/fuzz.bzl, docs/fuzzing.md): the records a Pipe's receiving end reads back out of its shared
// ring (detail/byte_ring.h), which another process may have overwritten. Each input is a small program run on a
// fresh simplex Pipe with a 4 KiB ring (records of at most 1019 bytes, so longer messages go in parts): send a
// message of a given length without waiting, receive without waiting, close the sending end, or overwrite 1 or 8
// bytes anywhere in the ring (its header with head, tail and capacity, or its records). Property: no crash,
// overrun or hang; until the first overwrite every recv returns exactly the next message sent whole (kTimeout when
// there is none, kClosed once the sender closed and all was read); after it, recv returns an Outcome or throws
// StreamCorrupted, and so does send, nothing else.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <deque>
#include <span>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/base/fuzz_program.h"
#include "ipc/pipe/connection.h"
#include "ipc/pipe/detail/test_access.h"

namespace {

using ipc::fuzz::numbered_message;
using ipc::fuzz::ProgramInput;

using ipc::Outcome;
using namespace std::chrono_literals;

[[noreturn]] void fail(const char* what) { ipc::fuzz::fuzz_failure("pipe fuzz", what); }


}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ProgramInput in(std::span(data, size));
  ipc::PipeOptions options;
  options.duplex = false;
  options.ring_bytes = 4096;
  auto [receiver, sender] = ipc::Pipe(options);
  ipc::detail::ByteRing& ring = ipc::detail::PipeTestAccess::receiving_ring(receiver);
  auto* memory = reinterpret_cast<std::byte*>(&ring.header());
  const std::size_t memory_bytes = ipc::detail::ByteRing::bytes_needed(ring.header().capacity);
  // The ring of a simplex Pipe starts its mapping, which is rounded up to whole pages: the rest of the last page is
  // zeros that nothing may write. (A sanitizer sees nothing in a MAP_SHARED mapping, so this is how an overrun by
  // the sender shows.)
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::span<const std::byte> slack(memory + memory_bytes, (memory_bytes + page - 1) / page * page - memory_bytes);
  auto check_slack = [&] {
    for (std::byte b : slack) {
      if (b != std::byte{0}) fail("a write past the end of the ring");
    }
  };

  std::deque<std::vector<std::byte>> expected;  // sent whole and not yet received, while the ring is intact
  bool overwritten = false;
  std::uint64_t sent = 0;
  for (int step = 0; step < 64 && !in.done(); ++step) {
    switch (in.byte() % 5) {
      case 0: {  // send without waiting
        if (sender.closed()) break;
        std::vector<std::byte> m = numbered_message(sent++, in.number(2) % 6000);
        Outcome r;
        try {
          r = sender.send_bytes(m, 0ms);
        } catch (const ipc::StreamCorrupted&) {
          if (!overwritten) fail("send threw StreamCorrupted on a ring nobody overwrote");
          break;
        }
        if (r == Outcome::kOk && !overwritten) expected.push_back(std::move(m));
        break;
      }
      case 1: {  // receive without waiting
        std::vector<std::byte> got;
        Outcome r;
        try {
          r = receiver.recv_bytes(got, 0ms);
        } catch (const ipc::StreamCorrupted&) {
          if (!overwritten) fail("recv threw StreamCorrupted on a ring nobody overwrote");
          break;
        }
        if (overwritten) break;
        if (!expected.empty()) {
          if (r != Outcome::kOk || got != expected.front()) fail("recv did not return the next message sent");
          expected.pop_front();
        } else if (r != (sender.closed() ? Outcome::kClosed : Outcome::kTimeout)) {
          fail("recv with nothing sent did not time out (or report the end of the stream)");
        }
        break;
      }
      case 2:  // close the sending end: the receiver reads what is left, then kClosed
        sender.close();
        break;
      case 3:  // overwrite one byte
        memory[in.number(2) % memory_bytes] = static_cast<std::byte>(in.byte());
        overwritten = true;
        break;
      case 4: {  // overwrite eight bytes (head, tail, capacity, a record header)
        const std::uint64_t at = in.number(2) % (memory_bytes - 7);
        const std::uint64_t value = in.number(8);
        std::memcpy(memory + at, &value, sizeof value);
        overwritten = true;
        break;
      }
    }
    check_slack();
  }
  return 0;
}
