// The client of examples/wordcount_service.cc, started from another shell: connects by name with the same key,
// sends each argument as a text and prints the word count the service answers.
//
//   ./bazelw run //examples:wordcount_client -- /tmp/wc.key "to be or not to be" "that is the question"
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/pipe/connection.h"
#include "ipc/pipe/listener.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: wordcount_client KEY_FILE TEXT...\n");
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  const std::vector<std::uint8_t> key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    std::optional<ipc::Connection> c = ipc::connect("wordcount", key, std::chrono::seconds(10));
    if (!c) {
      std::fprintf(stderr, "wordcount_client: the service did not answer within 10 s\n");
      return 1;
    }
    for (int i = 2; i < argc; ++i) {
      if (c->send(std::string(argv[i])) != ipc::Outcome::kOk) break;
      std::optional<std::uint64_t> n = c->recv<std::uint64_t>();
      if (!n) {
        std::fprintf(stderr, "wordcount_client: the service went away\n");
        return 1;
      }
      std::printf("%llu words: %s\n", static_cast<unsigned long long>(*n), argv[i]);
    }
  } catch (const ipc::NotFound& e) {  // no service running under that name
    std::fprintf(stderr, "wordcount_client: %s\n", e.what());
    return 1;
  } catch (const ipc::AuthenticationFailed& e) {  // another key
    std::fprintf(stderr, "wordcount_client: %s\n", e.what());
    return 1;
  }
  return 0;
}
