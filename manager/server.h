// manager/server.h: the Manager server: named shared objects served over a Unix socket or TCP with Cap'n Proto RPC.
//
// A Server binds a Unix socket (mode 0600, in a directory only its owner can enter) or a TCP port, and serves every
// client connection on one KJ event loop: each connection's bootstrap capability is an Authenticator, and only a
// client that proves knowledge of the shared key (challenge-response, see manager.capnp) reaches the Manager and
// its objects. Users can register their own Cap'n Proto capabilities with serve().
// Over TCP the key is the only gate (no file permissions), and it authenticates without encrypting: bind to
// 127.0.0.1 or a private network, or tunnel (ssh -L) (docs/manager.md, "Over TCP").
//
// Threads: construct, serve() and run() on one thread; stop() may be called from any thread and from a signal
//   handler (it writes to an eventfd). All objects are served by that one thread, so each RPC on an object is
//   atomic with respect to every other.
// Processes: start_server() runs a Server in a child process (the usual way); the `ipc-manager` program runs one
//   for unrelated processes. A Server object must not be used across fork() (the child gets a copy of the socket).
// Lifetime: the constructor binds and listens, so clients may connect before run() starts (they wait in the
//   backlog). Objects live inside run(): they are created by clients and destroyed when run() returns. The
//   destructor closes the socket and unlinks it (and the private directory it created). A server killed with
//   SIGKILL leaves the socket file behind; the next Server on that path replaces a socket nobody listens on.
// Errors: bad options or a malformed address (ipc::InvalidArgument), a path or TCP port in use by a live server
//   (ipc::StateError), a directory that others may enter (ipc::InvalidArgument), a host name that does not resolve
//   (ipc::NotFound); system call failures throw ipc::SystemError. Nothing a client sends
//   stops the server: malformed or oversized messages fail that one connection, which is dropped (the client is
//   sent the reason, and it goes to stderr); a bad call fails that call.
// Untrusted peers: until a connection authenticates, it may send messages of at most 4 KiB (the handshake needs a
//   few hundred bytes) and must authenticate within authentication_timeout, or it is dropped. The read buffer of
//   any connection grows with the bytes that actually arrived, never to the size a message announces, so idle,
//   slow or lying peers cost the server little memory and do not hold up the others.
#pragma once

#include <capnp/capability.h>
#include <kj/memory.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ipc/base/process.h"

namespace ipc::manager {

struct ServerOptions {
  // Where to listen: "tcp:HOST:PORT" or the path of a Unix socket.
  // - Empty: a Unix socket in a new private directory under $TMPDIR (or /tmp), made with mkdtemp.
  // - A path: its directory must exist or be creatable, belong to this user and be closed to group and others
  //   (mode 0700), because the socket's permissions alone do not stop others from replacing it.
  // - "tcp:HOST:PORT": HOST an IPv4 address, an IPv6 address ("[::1]"), or a host name (the first of its addresses
  //   that binds); "tcp:0.0.0.0:PORT" listens on every interface. PORT 0: the kernel picks a free port, which
  //   address() reports.
  std::string address{};
  // The shared key (at least 16 bytes). Clients prove knowledge of it; it never crosses the socket.
  std::vector<std::uint8_t> key{};
  // Largest incoming message accepted; a larger one drops that connection. Clients learn the limit when they
  // authenticate and refuse to send more, with a clear error.
  std::size_t max_message_bytes = std::size_t{64} << 20;
  // A connection that has not authenticated this long after it was accepted is closed (and the reason logged), so
  // that connections which never authenticate cannot pile up. Must be positive.
  std::chrono::milliseconds authentication_timeout = std::chrono::seconds(10);
};

class Server {
 public:
  // Binds and listens. REQUIRES: options.key.size() >= 16.
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Registers a user capability under `name` (owner thread, before or during run()). Clients get it with
  // Client::get_service<Interface>(name) after authenticating. A second registration of a name replaces the first
  // for later lookups.
  void serve(std::string name, kj::Own<capnp::Capability::Server> service);

  // Serves until stop(). Owner thread. Every connection is closed and every object destroyed when it returns.
  void run();

  // Makes run() return soon. Any thread, async-signal-safe; a stop() before run() makes run() return at once.
  void stop() noexcept;

  // Where it listens: the Unix socket path, or "tcp:HOST:PORT" with the numeric host and the port it got. What
  // clients pass to Client. Any thread.
  const std::string& address() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A Manager server running in a child process, owned by this handle.
struct ServerProcessOptions {
  std::string address{};               // as ServerOptions::address (empty: a private temporary directory, removed
                                       // at shutdown; "tcp:127.0.0.1:0": a free port on loopback)
  std::vector<std::uint8_t> key{};     // empty: 32 random bytes
  std::size_t max_message_bytes = std::size_t{64} << 20;
  std::chrono::milliseconds authentication_timeout = std::chrono::seconds(10);  // see ServerOptions
  // Runs in the child before serving, e.g. to serve() user interfaces.
  std::function<void(Server&)> setup{};
};

class ServerProcess {
 public:
  ServerProcess(ServerProcess&& other) noexcept;
  ServerProcess& operator=(ServerProcess&& other) noexcept;
  // Stops the server (see stop()).
  ~ServerProcess();

  // Where the server listens (for "tcp:HOST:0", with the port it got): what clients pass to Client.
  const std::string& address() const { return address_; }
  const std::vector<std::uint8_t>& key() const { return key_; }
  pid_t pid() const { return process_ ? process_->pid() : -1; }

  // Asks the server to stop (SIGTERM), waits up to `timeout`, then kills it (SIGKILL). Returns its exit code as
  // ipc::Process::exitcode() gives it: 0 after a clean stop, minus the signal that ended it otherwise.
  // Idempotent: later calls return the first result.
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  friend ServerProcess start_server(ServerProcessOptions options);
  ServerProcess() = default;
  void cleanup_files() noexcept;

  std::optional<Process> process_;
  bool owns_directory_ = false;
  std::string address_;
  std::vector<std::uint8_t> key_;
};

// Forks a daemon ipc::Process that serves a Manager; returns once it accepts connections (and knows its address). Call from a process
// that is allowed to fork (the child runs the server on a fresh thread and never returns into the caller's code).
// Being a daemon, the server is killed when the parent exits or dies, even by SIGKILL (docs/process.md).
// Errors: ipc::StateError if the child failed to start (with its message); ipc::SystemError for fork/pipe.
ServerProcess start_server(ServerProcessOptions options = {});

// 32 random bytes from getrandom(2), for keys and nonces.
std::vector<std::uint8_t> random_bytes(std::size_t n);

}  // namespace ipc::manager
