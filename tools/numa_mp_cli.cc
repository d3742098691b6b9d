// numa_mp: the command-line tool.
//
//   numa_mp topology                 nodes, CPUs, memory, distances, weights (like `numactl -H`)
//   numa_mp segments [--json]        this library's live segments: size, owner, policy, pages per node, users
//   numa_mp clean [--dry-run] [--prefix P]
//                                    remove segments no live process uses (only those whose names start with P),
//                                    and temporaries of dead creators
//   numa_mp policy TEXT|JSON         validate a memory policy for this machine and print both forms
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "ipc/numa/memory_policy.h"
#include "ipc/numa/placement.h"
#include "ipc/numa/topology.h"
#include "ipc/segment/segment.h"

namespace po = boost::program_options;

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s topology\n"
               "       %s segments [--json]\n"
               "       %s clean [--dry-run] [--prefix P]\n"
               "       %s policy TEXT|JSON\n",
               argv0, argv0, argv0, argv0);
  return 2;
}

std::string users_text(const std::vector<pid_t>& users) {
  std::string out;
  for (pid_t p : users) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out.empty() ? "-" : out;
}

// Pages per node of a segment, by opening it (only our own, complete segments can be opened).
std::string placement_of(const ipc::SegmentInfo& info) {
  if (!info.complete || info.owner_uid != geteuid()) return "-";
  try {
    ipc::Segment seg = ipc::Segment::open(info.name);
    return ipc::numa::page_placement(seg.base(), seg.size_bytes()).to_string();
  } catch (const ipc::Error& e) {
    return std::string("? (") + e.what() + ")";
  }
}

int cmd_segments(bool json) {
  auto segments = ipc::Segment::list();
  if (json) {
    std::printf("[");
    for (size_t i = 0; i < segments.size(); ++i) {
      const auto& s = segments[i];
      std::printf("%s\n  {\"name\": \"%s\", \"file\": \"%s\", \"size_bytes\": %zu, \"uid\": %u, \"creator_pid\": %d, "
                  "\"policy\": \"%s\", \"complete\": %s, \"users\": [%s], \"pages\": \"%s\"}",
                  i ? "," : "", s.name.c_str(), s.file.c_str(), s.size_bytes, s.owner_uid, s.creator_pid,
                  s.policy.c_str(), s.complete ? "true" : "false",
                  users_text(s.users) == "-" ? "" : users_text(s.users).c_str(), placement_of(s).c_str());
    }
    std::printf("\n]\n");
    return 0;
  }
  std::printf("%-40s %10s %6s %8s %-22s %-12s %s\n", "NAME", "SIZE", "UID", "CREATOR", "POLICY", "USERS",
              "PAGES PER NODE");
  for (const auto& s : segments) {
    std::string name = s.complete ? s.name : s.name + " (unfinished)";
    std::printf("%-40s %10zu %6u %8d %-22s %-12s %s\n", name.c_str(), s.size_bytes, s.owner_uid, s.creator_pid,
                s.policy.c_str(), users_text(s.users).c_str(), placement_of(s).c_str());
  }
  if (segments.empty()) std::printf("(no segments)\n");
  return 0;
}

int cmd_clean(bool dry_run, const std::string& prefix) {
  if (dry_run) {
    auto stale = ipc::Segment::list_stale(prefix);
    for (const auto& s : stale) std::printf("would remove %s\n", s.file.c_str());
    std::printf("%zu stale segment(s)\n", stale.size());
    return 0;
  }
  auto removed = ipc::Segment::remove_stale(prefix);
  for (const auto& f : removed) std::printf("removed %s\n", f.c_str());
  std::printf("%zu stale segment(s) removed\n", removed.size());
  return 0;
}

int cmd_policy(const std::string& text) {
  ipc::numa::MemoryPolicy p = !text.empty() && text.front() == '{' ? ipc::numa::MemoryPolicy::from_oci_json(text)
                                                                    : ipc::numa::MemoryPolicy::parse(text);
  p.validate_for_this_machine();
  std::printf("%s\n%s\nvalid on this machine\n", p.to_string().c_str(), p.to_oci_json().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description opts("options");
  opts.add_options()("command", po::value<std::string>())("arg", po::value<std::string>())(
      "json", "machine-readable output")("dry-run", "only say what would be removed")(
      "prefix", po::value<std::string>()->default_value(""), "clean only segments whose names start with this")("help,h", "this help");
  po::positional_options_description pos;
  pos.add("command", 1).add("arg", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return usage(argv[0]);
  }
  if (vm.count("help") || !vm.count("command")) return usage(argv[0]);
  const std::string cmd = vm["command"].as<std::string>();
  try {
    if (cmd == "topology") {
      std::cout << ipc::numa::Topology::discover().describe();
      return 0;
    }
    if (cmd == "segments") return cmd_segments(vm.count("json") > 0);
    if (cmd == "clean") return cmd_clean(vm.count("dry-run") > 0, vm["prefix"].as<std::string>());
    if (cmd == "policy" && vm.count("arg")) return cmd_policy(vm["arg"].as<std::string>());
  } catch (const ipc::Error& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
  return usage(argv[0]);
}
