// ipc/pipe/listener.h: Listener and connect(), Python's multiprocessing.connection Listener/Client for C++: two
// unrelated programs meet over a Unix socket, prove they share a key, and then talk through a Connection whose
// rings are shared memory made for them.
//
//   // the service (one shell)                          // a client (another shell)
//   ipc::Listener listener("wordcount", key);           ipc::Connection c = ipc::connect("wordcount", key);
//   ipc::Connection c = listener.accept();              (void)c.send(std::string("to be or not"));
//   auto text = c.recv<std::string>();                  auto n = c.recv<uint64_t>();
//
// An address is a name ("wordcount": a socket in this user's private directory, listener_socket_path()) or a path
// with a '/' (its directory must be this user's and closed to others, mode 0700). The socket is 0600. After the
// challenge-response of ipc/base/auth.h (the key never crosses the socket, a wrong key learns nothing), the
// listener makes a transferable Pipe (PipeOptions::transferable: its rings in a memfd, no name in /dev/shm) and
// passes the client's end over the socket with SCM_RIGHTS, then closes the socket: from there on both ends are a
// Pipe's Connection (send/recv/poll, wait(), end of stream when the peer dies or closes). See docs/connection.md.
//
// Threads: one thread at a time uses a Listener (accept, fileno, close); connect() is reentrant.
// Processes: a Listener serves the process that made it (do not use it across fork()); any process of this user
//   that holds the key may connect. Handshakes run side by side inside accept(): a client that is slow, silent or
//   sends garbage is dropped (after handshake_timeout, or at once for garbage) and never delays another client.
// Lifetime: the constructor binds and listens; the destructor (or close()) unlinks the socket file (only the one it
//   bound) and drops unfinished handshakes. Accepted Connections outlive the Listener. A listener killed by
//   SIGKILL leaves its socket file: connect() then reports NotFound, and the next Listener on the address replaces it.
// Errors: a key shorter than 16 bytes, a bad name or path, a directory open to others: InvalidArgument; a live
//   listener on the address: StateError; a wrong key (either side): AuthenticationFailed, from connect() (the
//   listener drops the client and goes on); no listener: NotFound; a timeout: nullopt; OS failures: SystemError.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "ipc/pipe/connection.h"

namespace ipc {

struct ListenerOptions {
  // The rings of each accepted connection: ring_bytes and policy are used; every connection is duplex and
  // transferable whatever these say.
  PipeOptions pipe{};
  // A client that has not authenticated this long after it was accepted is dropped. Must be positive.
  std::chrono::milliseconds handshake_timeout = std::chrono::seconds(5);
  // Handshakes in progress at once; when a new client comes while this many are unfinished, the oldest is dropped,
  // so a flood of idle connections cannot crowd out clients that answer at once. At least 1.
  std::size_t max_pending = 64;
};

class Listener {
 public:
  // Binds and listens on `address` (see above); `key` is copied. Throws as the header says.
  Listener(const std::string& address, std::span<const std::uint8_t> key, ListenerOptions options = {});
  Listener(Listener&&) noexcept;
  Listener& operator=(Listener&&) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  // The next client that authenticated, its Connection duplex. Blocks until one does; no CPU while waiting.
  Connection accept() { return *accept_until(Deadline::never()); }
  // The same within `timeout` (zero: only the handshakes that can finish now); nullopt when none finished in time.
  template <typename Rep, typename Period>
  [[nodiscard]] std::optional<Connection> accept(std::chrono::duration<Rep, Period> timeout) {
    return accept_until(Deadline::after(timeout));
  }

  // A descriptor that becomes readable when accept(0s) has work (a new client, a handshake message, a handshake
  // deadline): pass it to ipc::wait() as a sentinel beside the connections already served.
  int fileno() const;
  const std::string& socket_path() const;
  // Unlinks the socket and drops unfinished handshakes; later calls but close() throw StateError.
  void close();
  bool closed() const { return impl_ == nullptr; }

 private:
  struct Impl;
  std::optional<Connection> accept_until(const Deadline& deadline);
  std::unique_ptr<Impl> impl_;
};

// Connects to the listener at `address`, authenticates with `key` (both sides prove it) and returns this side's
// Connection. Blocks until the listener answers (a listener busy with other clients answers once accept() runs).
// Throws NotFound when nobody listens there (no socket file, or one a killed listener left), AuthenticationFailed
// when the listener refuses the key or cannot prove it holds it, InvalidArgument for a bad address or a short key,
// SystemError when the listener hangs up mid-handshake or on OS failure.
Connection connect(const std::string& address, std::span<const std::uint8_t> key);
// The same, giving up after `timeout` (connecting and the whole handshake): nullopt.
std::optional<Connection> connect(const std::string& address, std::span<const std::uint8_t> key,
                                  std::chrono::milliseconds timeout);

// The socket path an address stands for: a path (any address with a '/') as is; a name (1 to 64 of A-Z a-z 0-9
// . _ -, not starting with '.') as "<dir>/<name>.sock", where <dir> is $XDG_RUNTIME_DIR/numa_mp, or else
// numa_mp-<uid> under $TMPDIR (or /tmp where $TMPDIR is unset or too long for a socket path). InvalidArgument for
// a bad name.
std::string listener_socket_path(const std::string& address);

}  // namespace ipc
