// ipc/pipe/listener_peer.cc: the other program of listener_test: a Listener or a client in a process that is not a
// fork of the test (started with ipc::Process::exec), so that the test crosses between unrelated processes.
//
//   listener_peer serve ADDRESS KEY READY_FD [HANDSHAKE_MS]
//       listens; writes one byte to READY_FD once clients may connect; echoes every message on every connection
//       until one sends "quit" (then exits 0, removing its socket).
//   listener_peer send ADDRESS KEY
//       connects and sends messages of 256 KiB, byte i of message n being (n + i) % 251, until killed.
//   listener_peer connect ADDRESS KEY
//       connects; exits 0 when connected, 2 on AuthenticationFailed, 3 on NotFound, 4 on another ipc::Error.
// KEY is the key's bytes as text (test keys only).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/pipe/connection.h"
#include "ipc/pipe/listener.h"

namespace {

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

int serve(const std::string& address, const std::string& key, int ready_fd, int handshake_ms) {
  ipc::ListenerOptions options;
  options.handshake_timeout = std::chrono::milliseconds(handshake_ms);
  ipc::Listener listener(address, bytes_of(key), options);
  const char one = 1;
  if (::write(ready_fd, &one, 1) != 1) return 10;
  ::close(ready_fd);
  std::vector<ipc::Connection> conns;
  std::vector<std::byte> message;
  const int sentinel = listener.fileno();
  for (;;) {
    std::vector<ipc::Connection*> watched;
    for (auto& c : conns) watched.push_back(&c);
    ipc::WaitReady ready = ipc::wait(watched, std::span<const int>(&sentinel, 1));
    if (!ready.sentinels.empty()) {
      if (auto c = listener.accept(std::chrono::seconds(0))) conns.push_back(std::move(*c));
    }
    for (ipc::Connection* c : ready.connections) {
      const ipc::Outcome got = c->recv_bytes(message, std::chrono::seconds(0));
      if (got == ipc::Outcome::kTimeout) continue;  // a long message not all here yet: its parts are kept
      if (got == ipc::Outcome::kClosed) {
        c->close();  // end of stream: the client left
        continue;
      }
      if (std::string(reinterpret_cast<const char*>(message.data()), message.size()) == "quit") return 0;
      if (c->send_bytes(message) != ipc::Outcome::kOk) c->close();
    }
    std::erase_if(conns, [](const ipc::Connection& c) { return c.closed(); });
  }
}

int send_forever(const std::string& address, const std::string& key) {
  ipc::Connection c = ipc::connect(address, bytes_of(key));
  std::vector<std::byte> message(256 * 1024);
  for (uint64_t n = 0;; ++n) {
    for (size_t i = 0; i < message.size(); ++i) message[i] = static_cast<std::byte>((n + i) % 251);
    if (c.send_bytes(message) != ipc::Outcome::kOk) return 5;
  }
}

int try_connect(const std::string& address, const std::string& key) {
  try {
    ipc::Connection c = ipc::connect(address, bytes_of(key));
    return 0;
  } catch (const ipc::AuthenticationFailed& e) {
    std::fprintf(stderr, "listener_peer: %s\n", e.what());
    return 2;
  } catch (const ipc::NotFound& e) {
    std::fprintf(stderr, "listener_peer: %s\n", e.what());
    return 3;
  } catch (const ipc::Error& e) {
    std::fprintf(stderr, "listener_peer: %s\n", e.what());
    return 4;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() >= 4 && args[0] == "serve") {
    return serve(args[1], args[2], std::atoi(args[3].c_str()), args.size() > 4 ? std::atoi(args[4].c_str()) : 5000);
  }
  if (args.size() == 3 && args[0] == "send") return send_forever(args[1], args[2]);
  if (args.size() == 3 && args[0] == "connect") return try_connect(args[1], args[2]);
  std::fprintf(stderr, "usage: listener_peer serve|send|connect ADDRESS KEY [READY_FD [HANDSHAKE_MS]]\n");
  return 64;
}
