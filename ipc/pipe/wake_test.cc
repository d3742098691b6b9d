// Wake-ups, tested so that a missing one fails: a child sleeps in one blocking call (recv or ipc::wait on an empty
// pipe, send into a full ring) with a deadline of kWakeDeadline, this process acts once, and the child's call must
// succeed before its deadline. Under StretchedRechecks a blocked recv or send sleeps on the ring's futex word until
// its deadline (its move to poll(2) comes later), and ipc::wait sleeps in poll(2): only the other end's futex
// wake-up or doorbell can end the sleep in time.
#include <catch2/catch.hpp>

#include <cstddef>
#include <vector>

#include "ipc/pipe/connection.h"
#include "tests/support/test_support.h"

using ipc::Outcome;
using ipc::test::kWakeDeadline;
using ipc::test::wake_problem;

TEST_CASE("a recv asleep on an empty pipe is woken by a send", "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  auto [a, b] = ipc::Pipe();
  CHECK(wake_problem(
            "receiver", [&] { int v = 0; return b.recv(v, kWakeDeadline) == Outcome::kOk && v == 7; },
            [&] { REQUIRE(a.send(7) == Outcome::kOk); }) == "");
}

TEST_CASE("ipc::wait asleep on an empty pipe is woken by a send", "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  auto [a, b] = ipc::Pipe();
  std::vector<ipc::Connection*> connections{&b};
  CHECK(wake_problem(
            "waiter", [&] { return ipc::wait(connections, {}, kWakeDeadline).connections.size() == 1; },
            [&] { REQUIRE(a.send(7) == Outcome::kOk); }) == "");
}

TEST_CASE("a send asleep on a full ring is woken by the receiver taking its parts", "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  // The message is 16 rings long: the sender sleeps for room again and again, each time woken by the receiver.
  auto [a, b] = ipc::Pipe(ipc::PipeOptions{.ring_bytes = 4096});
  const std::vector<std::byte> message(16 * 4096, std::byte{0x42});
  std::vector<std::byte> got;
  CHECK(wake_problem(
            "sender", [&] { return a.send_bytes(message, kWakeDeadline) == Outcome::kOk; },
            [&] { REQUIRE(b.recv_bytes(got, kWakeDeadline) == Outcome::kOk); }) == "");
  CHECK(got == message);
}

TEST_CASE("a recv asleep on an empty pipe sees end of stream at once when the sender closes its end",
          "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  auto [a, b] = ipc::Pipe();
  // The receiver sleeps on the ring's futex (its move to poll(2), where a hang-up shows, is stretched past the
  // deadline): only the closing end's wake-up tells it to look at its socket in time.
  CHECK(wake_problem(
            "receiver",
            [&] {
              a.close();  // the child's copy of the sending end: the parent's copy is then the last one
              std::vector<std::byte> got;
              return b.recv_bytes(got, kWakeDeadline) == Outcome::kClosed;
            },
            [&] { a.close(); }) == "");
}

// A close that comes before the wait: its futex wake-up found nobody asleep, and a waiter that then sleeps on the
// futex would see the hang-up only when it moves to poll(2) (stretched past the deadline here). The child closes
// its copy of the other end, sleeps until this process has closed the last copy, and only then calls recv or send.
TEST_CASE("a recv that starts after the sender closed its end sees end of stream at once", "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  auto [a, b] = ipc::Pipe();
  ipc::test::PipeSignal closed;
  CHECK(wake_problem(
            "receiver",
            [&] {
              a.close();
              if (!closed.wait(kWakeDeadline)) return false;
              std::vector<std::byte> got;
              return b.recv_bytes(got, kWakeDeadline) == Outcome::kClosed;
            },
            [&] {
              a.close();
              closed.notify();
            }) == "");
}

TEST_CASE("a send that starts after the receiver closed its end returns closed at once", "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  auto [a, b] = ipc::Pipe(ipc::PipeOptions{.ring_bytes = 4096});
  ipc::test::PipeSignal closed;
  const std::vector<std::byte> message(512, std::byte{0x42});
  CHECK(wake_problem(
            "sender",
            [&] {
              b.close();
              Outcome r;
              while ((r = a.send_bytes(message, std::chrono::seconds(0))) == Outcome::kOk) {
              }
              if (r != Outcome::kTimeout || !closed.wait(kWakeDeadline)) return false;  // the ring is full
              return a.send_bytes(message, kWakeDeadline) == Outcome::kClosed;
            },
            [&] {
              b.close();
              closed.notify();
            }) == "");
}

// The other side of the same rule: a closed copy is not end of stream while another copy of that end is open.
TEST_CASE("a recv keeps waiting when a copy of the sending end is closed and another is open", "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  auto [a, b] = ipc::Pipe();
  CHECK(wake_problem(
            "receiver",
            [&] {
              a.close();  // the child's copy; the parent's copy stays open and sends
              int v = 0;
              return b.recv(v, kWakeDeadline) == Outcome::kOk && v == 7;
            },
            [&] { REQUIRE(a.send(7) == Outcome::kOk); }) == "");
}
