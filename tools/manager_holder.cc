// Test helper for cli_test.sh: `manager_holder ADDRESS KEYFILE` connects to a Manager with the key in KEYFILE,
// creates a dict "config" (one entry) and a queue "jobs", prints "ready", and stays connected until stdin closes.
#include <cstdio>
#include <iostream>
#include <string>

#include "manager/client.h"

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  ipc::manager::Client client(argv[1], ipc::manager::load_key(argv[2]));
  client.dict("config").set("threads", 8);
  (void)client.queue("jobs");
  std::printf("ready\n");
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}
