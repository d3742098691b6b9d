// ipc-manager: serves a Manager on a Unix socket for unrelated processes.
//
//   ipc-manager --socket /run/user/1000/myapp/manager.sock --key-file ~/.config/myapp/manager.key
//
// The key file holds the shared key (at least 16 bytes; trailing newlines are ignored; `numa_mp manager key FILE`
// writes one) and must not be accessible by group or others (ipc::manager::load_key reads it). The socket's
// directory is created (0700) if missing and must be private. SIGTERM or SIGINT stops the server cleanly (socket
// removed). Exit status: 0 after a clean stop, 2 for bad usage, 1 otherwise.
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
  po::options_description options("ipc-manager: serve Manager objects on a Unix socket");
  std::string socket_path, key_file;
  std::size_t max_message_bytes = std::size_t{64} << 20;
  long auth_timeout_ms = 10'000;
  options.add_options()("help,h", "show this help")(
      "socket", po::value(&socket_path)->required(), "Unix socket path (its directory must be private, 0700)")(
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
        ipc::manager::ServerOptions{socket_path, ipc::manager::load_key(key_file), max_message_bytes,
                                    std::chrono::milliseconds(auth_timeout_ms)});
    g_server = &server;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
    // A client that vanishes mid-write must not kill the server.
    ::signal(SIGPIPE, SIG_IGN);
    std::cout << "ipc-manager: serving on " << server.socket_path() << std::endl;
    server.run();
    g_server = nullptr;
    std::cout << "ipc-manager: stopped" << std::endl;
    return 0;
  } catch (const ipc::Error& e) {
    std::cerr << "ipc-manager: " << e.what() << "\n";
    return 1;
  }
}
