// A program outside the Bazel tree that uses the installed Manager: it starts a server, sets and reads a shared
// dict entry. Built by install_test.sh with pkg-config and with CMake.
#include <cstdio>

#include "manager/client.h"
#include "manager/server.h"

int main() {
  auto server = ipc::manager::start_server();
  ipc::manager::Client client(server.address(), server.key());
  auto dict = client.dict("d");
  dict.set("answer", ipc::manager::Value(42));
  std::string text = ipc::manager::to_string(dict.get("answer").value());
  std::printf("answer %s\n", text.c_str());
  return text == "42" ? 0 : 1;
}
