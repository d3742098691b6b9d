// A service that unrelated programs reach by name: it counts the words of each text a client sends and answers
// with the count, over an ipc::Listener connection (the data in shared memory, not through the socket).
//
//   shell 1:  head -c 32 /dev/urandom > /tmp/wc.key && chmod 600 /tmp/wc.key
//             ./bazelw run //examples:wordcount_service -- /tmp/wc.key        # serves until killed
//   shell 2:  ./bazelw run //examples:wordcount_client -- /tmp/wc.key "to be or not to be"
//
// Several clients may be connected at once: the service waits on all of them and on new clients together.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ipc/pipe/connection.h"
#include "ipc/pipe/listener.h"

std::vector<std::uint8_t> read_key(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::uint8_t> key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.eof() && !in.good()) throw std::runtime_error(std::string("cannot read ") + path);
  return key;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: wordcount_service KEY_FILE\n");
    return 2;
  }
  ipc::Listener listener("wordcount", read_key(argv[1]));
  std::printf("wordcount: listening on %s\n", listener.socket_path().c_str());
  std::fflush(stdout);
  std::vector<ipc::Connection> clients;
  const int incoming = listener.fileno();
  for (;;) {
    std::vector<ipc::Connection*> watched;
    for (auto& c : clients) watched.push_back(&c);
    ipc::WaitReady ready = ipc::wait(watched, std::span<const int>(&incoming, 1));
    if (!ready.sentinels.empty()) {
      if (auto c = listener.accept(std::chrono::seconds(0))) clients.push_back(std::move(*c));
    }
    for (ipc::Connection* c : ready.connections) {
      std::string text;
      const ipc::Outcome got = c->recv(text, std::chrono::seconds(0));
      if (got == ipc::Outcome::kClosed) c->close();  // the client left (or died)
      if (got != ipc::Outcome::kOk) continue;
      std::istringstream words(text);
      const auto n = static_cast<std::uint64_t>(std::distance(std::istream_iterator<std::string>(words), {}));
      if (c->send(n) != ipc::Outcome::kOk) c->close();
    }
    std::erase_if(clients, [](const ipc::Connection& c) { return c.closed(); });
  }
}
