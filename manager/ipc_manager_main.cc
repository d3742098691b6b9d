// ipc-manager: serves a Manager on a Unix socket or a TCP port, for unrelated processes (on other hosts too).
//
//   ipc-manager --listen /run/user/1000/myapp/manager.sock --key-file ~/.config/myapp/manager.key
//   ipc-manager --listen tcp:10.0.0.5:7000 --key-file ~/.config/myapp/manager.key      (tcp:HOST:0: a free port)
//
// The key file holds the shared key (at least 16 bytes; trailing newlines are ignored; `numa_mp manager key FILE`
// writes one) and must not be accessible by group or others (ipc::manager::load_key reads it). A Unix socket's
// directory is created (0700) if missing and must be private. Over TCP the key is the only gate and nothing is
// encrypted: listen on 127.0.0.1 or a private network (docs/manager.md, "Over TCP"). Once listening it prints
// "ipc-manager: serving on ADDRESS" (for port 0, with the port it got). SIGTERM or SIGINT stops the server cleanly
// (socket removed). Exit status: 0 after a clean stop, 2 for bad usage, 1 otherwise.
#include <signal.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "ipc/base/error.h"
#include "manager/key_file.h"
#include "manager/server.h"

namespace {

ipc::manager::Server* g_server = nullptr;

extern "C" void on_stop_signal(int) {
  if (g_server != nullptr) g_server->stop();
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  po::options_description options("ipc-manager: serve Manager objects on a Unix socket or a TCP port");
  std::string address, key_file;
  std::size_t max_message_bytes = std::size_t{64} << 20;
  long auth_timeout_ms = 10'000;
  options.add_options()("help,h", "show this help")(
      "listen", po::value(&address)->required(),
      "where to listen: a Unix socket path (its directory must be private, 0700), or tcp:HOST:PORT (PORT 0: a free "
      "port; the key authenticates but does not encrypt: use 127.0.0.1, a private network or an SSH tunnel)")(
      "key-file", po::value(&key_file)->required(), "file holding the shared key (mode 0600, >= 16 bytes)")(
      "max-message-bytes", po::value(&max_message_bytes)->default_value(max_message_bytes),
      "largest request accepted; larger ones drop that client's connection")(
      "auth-timeout-ms", po::value(&auth_timeout_ms)->default_value(auth_timeout_ms),
      "a connection that has not authenticated this long after connecting is closed");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    if (vm.count("help")) {
      std::cout << options << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "ipc-manager: " << e.what() << "\n" << options << "\n";
    return 2;
  }
  try {
    ipc::manager::Server server(
        ipc::manager::ServerOptions{address, ipc::manager::load_key(key_file), max_message_bytes,
                                    std::chrono::milliseconds(auth_timeout_ms)});
    g_server = &server;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
    // A client that vanishes mid-write must not kill the server.
    ::signal(SIGPIPE, SIG_IGN);
    std::cout << "ipc-manager: serving on " << server.address() << std::endl;
    server.run();
    g_server = nullptr;
    std::cout << "ipc-manager: stopped" << std::endl;
    return 0;
  } catch (const ipc::Error& e) {
    std::cerr << "ipc-manager: " << e.what() << "\n";
    return 1;
  }
}
