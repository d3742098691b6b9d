// numa_mp: the command-line tool (docs/cli.md).
//
//   numa_mp topology                      nodes, CPUs, memory, distances, weights (like `numactl -H`)
//   numa_mp segments                      this library's live segments: size, owner, policy, pages per node, users
//   numa_mp inspect SEGMENT               the objects inside a segment: queues, locks, arrays, ...
//   numa_mp clean [--dry-run] [--prefix P]
//                                         remove segments no live process uses, and temporaries of dead creators
//   numa_mp policy TEXT|JSON              validate a memory policy for this machine and print both forms
//   numa_mp manager status ADDRESS [--key-file FILE] [--timeout-ms N]
//                                         objects and connected clients of a running Manager
//   numa_mp manager key FILE [--force]    write a new random key file (0600)
//
// Every command takes --json (machine-readable output on stdout) and --help. Exit status: 0 on success, 1 when the
// command failed (the error on stderr), 2 for bad usage (the unknown command, option or argument named on stderr).
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "ipc/numa/memory_policy.h"
#include "ipc/numa/placement.h"
#include "ipc/numa/topology.h"
#include "ipc/queue/status.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/array.h"
#include "ipc/sync/lock.h"
#include "manager/client.h"
#include "tools/json.h"

namespace po = boost::program_options;
using numa_mp_cli::Json;

namespace {

constexpr const char* kUsage =
    "usage: numa_mp [--help] COMMAND [ARGS] [--json]\n"
    "\n"
    "commands:\n"
    "  topology                          NUMA nodes, CPUs, memory, distances (like numactl -H)\n"
    "  segments                          live segments: size, owner, policy, pages per node, users, arrays\n"
    "  inspect SEGMENT                   the objects inside a segment (queues, locks, arrays, ...)\n"
    "  clean [--dry-run] [--prefix P]    remove segments no live process uses\n"
    "  policy TEXT|JSON                  validate a memory policy for this machine\n"
    "  manager status ADDRESS [--key-file FILE] [--timeout-ms N]\n"
    "                                    objects and connected clients of a running Manager\n"
    "  manager key FILE [--force]        write a new random Manager key file (mode 0600)\n"
    "\n"
    "Every command takes --json and --help ('numa_mp COMMAND --help').\n";

// Bad usage: the message names what was wrong; main prints it with a pointer to --help and exits 2.
struct UsageError {
  std::string message;
};

// A command's options and positional arguments, parsed from what follows its name.
class CommandLine {
 public:
  // `synopsis`: "inspect SEGMENT"; `positionals`: the names of the required positional arguments, in order.
  CommandLine(std::string synopsis, std::string about, std::vector<std::string> positionals)
      : synopsis_(std::move(synopsis)), about_(std::move(about)), positionals_(std::move(positionals)),
        options_("options") {
    options_.add_options()("json", "machine-readable output (JSON on stdout)")("help,h", "this help");
  }
  po::options_description_easy_init add_options() { return options_.add_options(); }

  // Parses `args`; false when --help was given (and the help was printed). Throws UsageError.
  bool parse(const std::vector<std::string>& args) {
    po::options_description all;
    all.add(options_);
    all.add_options()("positional", po::value<std::vector<std::string>>());
    po::positional_options_description pos;
    pos.add("positional", -1);
    try {
      po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm_);
      po::notify(vm_);
    } catch (const po::error& e) {
      throw UsageError{synopsis_name() + ": " + e.what()};
    }
    if (vm_.count("help")) {
      std::cout << "usage: numa_mp " << synopsis_ << "\n\n" << about_ << "\n\n" << options_ << "\n";
      return false;
    }
    if (vm_.count("positional")) values_ = vm_["positional"].as<std::vector<std::string>>();
    if (values_.size() < positionals_.size()) {
      throw UsageError{synopsis_name() + ": missing " + positionals_[values_.size()]};
    }
    if (values_.size() > positionals_.size()) {
      throw UsageError{synopsis_name() + ": unexpected argument '" + values_[positionals_.size()] + "'"};
    }
    return true;
  }

  bool json() const { return vm_.count("json") > 0; }
  bool flag(const char* name) const { return vm_.count(name) > 0; }
  const std::string& positional(size_t i) const { return values_.at(i); }
  const po::variables_map& values() const { return vm_; }

 private:
  // "manager status" from "manager status ADDRESS [--key-file FILE]".
  std::string synopsis_name() const {
    std::string name;
    for (size_t i = 0; i < synopsis_.size() && synopsis_[i] != '[' && !std::isupper(synopsis_[i]); ++i) {
      name += synopsis_[i];
    }
    while (!name.empty() && name.back() == ' ') name.pop_back();
    return name;
  }

  std::string synopsis_, about_;
  std::vector<std::string> positionals_;
  po::options_description options_;
  po::variables_map vm_;
  std::vector<std::string> values_;
};

void print_json(const Json& j) { std::cout << j.dump() << "\n"; }

Json int_list(const std::vector<int>& v) {
  Json::Array a;
  for (int x : v) a.emplace_back(x);
  return a;
}

// Pages per node as {"0": 12, "1": 11}; pages never touched are "absent" beside it.
Json pages_json(const ipc::numa::PagePlacement& p) {
  Json::Object nodes;
  for (auto [node, pages] : p.pages_on_node) nodes.emplace_back(std::to_string(node), pages);
  return Json::Object{{"pages_per_node", nodes}, {"pages_absent", p.pages_not_present}, {"pages_total", p.total_pages}};
}

// ---- topology ----

int cmd_topology(const std::vector<std::string>& args) {
  CommandLine cl("topology", "NUMA nodes with their CPUs, memory, distances and interleave weights.", {});
  if (!cl.parse(args)) return 0;
  const auto t = ipc::numa::Topology::discover();
  if (!cl.json()) {
    std::cout << t.describe();
    return 0;
  }
  Json::Array nodes;
  for (const auto& n : t.nodes()) {
    nodes.emplace_back(Json::Object{
        {"id", n.id},
        {"cpus", int_list(n.cpus)},
        {"has_memory", n.has_memory},
        {"memory_total_bytes", n.memory_total_bytes},
        {"memory_free_bytes", n.memory_free_bytes},
        {"distances", int_list(n.distances)},
        {"interleave_weight", n.interleave_weight ? Json(*n.interleave_weight) : Json()},
    });
  }
  print_json(Json::Object{
      {"nodes", nodes},
      {"online", int_list(t.online().ids())},
      {"with_memory", int_list(t.with_memory().ids())},
      {"allowed_cpus", int_list(t.allowed_cpus())},
      {"allowed_memory_nodes", int_list(t.allowed_memory_nodes().ids())},
      {"weighted_interleave", t.has_weighted_interleave()},
  });
  return 0;
}

// ---- segments ----

// Our own complete segments can be opened (to read pages per node and the objects inside); others' cannot.
std::optional<ipc::Segment> open_if_ours(const ipc::SegmentInfo& info, std::string& why_not) {
  if (!info.complete) {
    why_not = "unfinished";
    return std::nullopt;
  }
  if (info.owner_uid != geteuid()) {
    why_not = "another user's";
    return std::nullopt;
  }
  try {
    return ipc::Segment::open(info.name);
  } catch (const ipc::Error& e) {
    why_not = e.what();
    return std::nullopt;
  }
}

// Each Array in the segment with the policy its elements follow: its own (ArrayOptions::policy) or the segment's.
struct ArrayPolicy {
  std::string name;
  std::string policy;
  bool own;
};
std::vector<ArrayPolicy> array_policies(const ipc::Segment& seg) {
  std::vector<ArrayPolicy> out;
  for (const auto& b : seg.blocks()) {
    if (b.kind_tag != ipc::Array<std::byte>::kKind.tag) continue;
    auto info = ipc::inspect_array(seg, b.name);
    out.push_back({b.name, info.policy ? info.policy->to_string() : seg.policy().to_string(), info.policy.has_value()});
  }
  return out;
}

std::string users_text(const std::vector<pid_t>& users) {
  std::string out;
  for (pid_t p : users) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out.empty() ? "-" : out;
}

int cmd_segments(const std::vector<std::string>& args) {
  CommandLine cl("segments",
                 "This library's segments on the machine: size, owner, creator, policy, users, pages per node,\n"
                 "and each Array's own policy.",
                 {});
  if (!cl.parse(args)) return 0;
  const auto segments = ipc::Segment::list();
  Json::Array rows;
  if (!cl.json()) {
    std::printf("%-40s %10s %6s %8s %-22s %-12s %s\n", "NAME", "SIZE", "UID", "CREATOR", "POLICY", "USERS",
                "PAGES PER NODE");
  }
  for (const auto& s : segments) {
    std::string why_not;
    auto seg = open_if_ours(s, why_not);
    std::optional<ipc::numa::PagePlacement> pages;
    std::vector<ArrayPolicy> arrays;
    if (seg) {
      pages = ipc::numa::page_placement(seg->base(), seg->size_bytes());
      arrays = array_policies(*seg);
    }
    if (cl.json()) {
      Json::Array users, array_rows;
      for (pid_t p : s.users) users.emplace_back(p);
      for (const auto& a : arrays) array_rows.emplace_back(Json::Object{{"name", a.name}, {"policy", a.policy}, {"own_policy", a.own}});
      rows.emplace_back(Json::Object{
          {"name", s.name},
          {"file", s.file},
          {"size_bytes", s.size_bytes},
          {"uid", s.owner_uid},
          {"creator_pid", s.creator_pid},
          {"policy", s.policy},
          {"complete", s.complete},
          {"users", users},
          {"pages", pages ? pages_json(*pages) : Json()},
          {"arrays", array_rows},
      });
      continue;
    }
    std::string name = s.complete ? s.name : s.name + " (unfinished)";
    std::printf("%-40s %10zu %6u %8d %-22s %-12s %s\n", name.c_str(), s.size_bytes, s.owner_uid, s.creator_pid,
                s.policy.c_str(), users_text(s.users).c_str(),
                pages ? pages->to_string().c_str() : ("- (" + why_not + ")").c_str());
    for (const auto& a : arrays) {
      std::printf("  Array %-32s policy %s%s\n", a.name.c_str(), a.policy.c_str(), a.own ? "" : " (the segment's)");
    }
  }
  if (cl.json()) {
    print_json(rows);
  } else if (segments.empty()) {
    std::printf("(no segments)\n");
  }
  return 0;
}

// ---- inspect ----

// One named object as inspect shows it: a one-line description and its JSON fields.
struct ObjectView {
  std::string text;
  Json::Object fields;
};

ObjectView view_queue(const ipc::Segment& seg, const ipc::BlockInfo& b) {
  const auto q = ipc::queue_status(seg, b.name);
  const auto lone = [](uint32_t pid) { return pid ? Json(pid) : Json(); };
  return {std::to_string(q.size_approx) + "/" + std::to_string(q.capacity) + " items, " +
              std::to_string(q.abandoned_count) + " abandoned" + (q.closed ? ", closed" : "") +
              (q.lone_producer ? ", lone producer " + std::to_string(q.lone_producer) : "") +
              (q.lone_consumer ? ", lone consumer " + std::to_string(q.lone_consumer) : ""),
          {{"size_approx", q.size_approx},
           {"capacity", q.capacity},
           {"abandoned_count", q.abandoned_count},
           {"closed", q.closed},
           {"lone_producer", lone(q.lone_producer)},
           {"lone_consumer", lone(q.lone_consumer)}}};
}

template <typename L>
ObjectView view_lock(const ipc::Segment& seg, const ipc::BlockInfo& b) {
  const L* lock = seg.find<L>(b.name);
  if (!lock) return {"(removed meanwhile)", {}};
  const auto owner = lock->owner();
  if (!owner) return {"free", {{"owner", Json()}}};
  return {std::string(owner->alive ? "held by " : "owner died: ") + std::to_string(owner->thread_id) +
              (owner->alive ? " (alive)" : " (dead; the next acquirer gets kOwnerDied)"),
          {{"owner", Json::Object{{"pid", owner->thread_id}, {"alive", owner->alive}}}}};
}

ObjectView view_array(const ipc::Segment& seg, const ipc::BlockInfo& b) {
  const auto a = ipc::inspect_array(seg, b.name);
  const std::string policy = a.policy ? a.policy->to_string() : seg.policy().to_string();
  const auto pages = ipc::numa::page_placement(a.data, a.data_bytes);
  return {std::to_string(a.length) + " x " + std::to_string(a.element_bytes) + " bytes, policy " + policy +
              (a.policy ? "" : " (the segment's)") + ", pages " + pages.to_string(),
          {{"length", a.length},
           {"element_bytes", a.element_bytes},
           {"policy", policy},
           {"own_policy", a.policy.has_value()},
           {"pages", pages_json(pages)}}};
}

int cmd_inspect(const std::vector<std::string>& args) {
  CommandLine cl("inspect SEGMENT",
                 "The objects inside a segment: queues with their fill level and abandoned count, locks with\n"
                 "their owner (alive or dead), arrays with their own policy and pages per node, others by kind.",
                 {"SEGMENT"});
  if (!cl.parse(args)) return 0;
  const auto seg = ipc::Segment::open(cl.positional(0));
  const auto pages = ipc::numa::page_placement(seg.base(), seg.size_bytes());
  Json::Array objects;
  if (!cl.json()) {
    std::printf("segment %s: %zu bytes, %zu free, policy %s, pages %s\n", seg.name().c_str(), seg.size_bytes(),
                seg.free_bytes(), seg.policy().to_string().c_str(), pages.to_string().c_str());
    std::printf("%-32s %-16s %10s  %s\n", "NAME", "KIND", "BYTES", "STATE");
  }
  const auto blocks = seg.blocks();
  for (const auto& b : blocks) {
    ObjectView v;
    if (ipc::is_queue(b)) {
      v = view_queue(seg, b);
    } else if (b.kind_tag == ipc::Lock::kKind.tag) {
      v = view_lock<ipc::Lock>(seg, b);
    } else if (b.kind_tag == ipc::RLock::kKind.tag) {
      v = view_lock<ipc::RLock>(seg, b);
    } else if (b.kind_tag == ipc::Array<std::byte>::kKind.tag) {
      v = view_array(seg, b);
    }
    if (cl.json()) {
      Json::Object o{{"name", b.name}, {"kind", b.kind}, {"bytes", b.bytes}};
      for (auto& f : v.fields) o.push_back(std::move(f));
      objects.emplace_back(std::move(o));
    } else {
      std::printf("%-32s %-16s %10llu  %s\n", b.name.c_str(), b.kind.c_str(), static_cast<unsigned long long>(b.bytes),
                  v.text.c_str());
    }
  }
  if (cl.json()) {
    print_json(Json::Object{{"name", seg.name()},
                            {"size_bytes", seg.size_bytes()},
                            {"free_bytes", seg.free_bytes()},
                            {"policy", seg.policy().to_string()},
                            {"pages", pages_json(pages)},
                            {"objects", objects}});
  } else if (blocks.empty()) {
    std::printf("(no objects)\n");
  }
  return 0;
}

// ---- clean ----

int cmd_clean(const std::vector<std::string>& args) {
  CommandLine cl("clean [--dry-run] [--prefix P]",
                 "Removes this user's segments that no live process uses, and temporaries of dead creators.", {});
  cl.add_options()("dry-run", "only say what would be removed")(
      "prefix", po::value<std::string>()->default_value(""), "only segments whose names start with P");
  if (!cl.parse(args)) return 0;
  const std::string prefix = cl.values()["prefix"].as<std::string>();
  const bool dry_run = cl.flag("dry-run");
  std::vector<std::string> files;
  if (dry_run) {
    for (const auto& s : ipc::Segment::list_stale(prefix)) files.push_back(s.file);
  } else {
    files = ipc::Segment::remove_stale(prefix);
  }
  if (cl.json()) {
    Json::Array list;
    for (const auto& f : files) list.emplace_back(f);
    print_json(Json::Object{{"dry_run", dry_run}, {dry_run ? "would_remove" : "removed", list}});
    return 0;
  }
  for (const auto& f : files) std::printf("%s %s\n", dry_run ? "would remove" : "removed", f.c_str());
  std::printf(dry_run ? "%zu stale segment(s)\n" : "%zu stale segment(s) removed\n", files.size());
  return 0;
}

// ---- policy ----

int cmd_policy(const std::vector<std::string>& args) {
  CommandLine cl("policy TEXT|JSON",
                 "Validates a memory policy (\"interleave:0-3\", or the OCI JSON object) for this machine and\n"
                 "prints its short and OCI forms.",
                 {"TEXT|JSON"});
  if (!cl.parse(args)) return 0;
  const std::string& text = cl.positional(0);
  const auto p = !text.empty() && text.front() == '{' ? ipc::numa::MemoryPolicy::from_oci_json(text)
                                                       : ipc::numa::MemoryPolicy::parse(text);
  p.validate_for_this_machine();
  if (cl.json()) {
    print_json(Json::Object{{"policy", p.to_string()}, {"oci", p.to_oci_json()}, {"valid_on_this_machine", true}});
  } else {
    std::printf("%s\n%s\nvalid on this machine\n", p.to_string().c_str(), p.to_oci_json().c_str());
  }
  return 0;
}

// ---- manager ----

int cmd_manager_status(const std::vector<std::string>& args) {
  CommandLine cl("manager status ADDRESS [--key-file FILE] [--timeout-ms N]",
                 "The objects and connected clients of a running Manager (ipc-manager). ADDRESS is its Unix socket\n"
                 "path or tcp:HOST:PORT. The key file defaults to $NUMA_MP_MANAGER_KEY.",
                 {"ADDRESS"});
  cl.add_options()("key-file", po::value<std::string>(), "the Manager's key file (mode 0600)")(
      "key", po::value<std::string>(), "the same as --key-file")(
      "timeout-ms", po::value<long long>()->default_value(30'000),
      "give up connecting after N ms (a host that does not answer, a server that does not complete the handshake)");
  if (!cl.parse(args)) return 0;
  const long long timeout_ms = cl.values()["timeout-ms"].as<long long>();
  if (timeout_ms <= 0) throw UsageError{"manager status: --timeout-ms must be positive"};
  std::string key_file;
  if (cl.values().count("key-file") && cl.values().count("key")) {
    throw UsageError{"manager status: give --key-file or --key, not both"};
  }
  if (cl.values().count("key-file")) {
    key_file = cl.values()["key-file"].as<std::string>();
  } else if (cl.values().count("key")) {
    key_file = cl.values()["key"].as<std::string>();
  } else if (const char* env = std::getenv("NUMA_MP_MANAGER_KEY"); env != nullptr && *env != '\0') {
    key_file = env;
  } else {
    throw UsageError{"manager status: missing --key-file FILE (or NUMA_MP_MANAGER_KEY)"};
  }
  ipc::manager::Client client(cl.positional(0), ipc::manager::load_key(key_file),
                              {.connect_timeout = std::chrono::milliseconds(timeout_ms)});
  const auto status = client.status();
  if (cl.json()) {
    Json::Array objects, clients;
    for (const auto& o : status.objects) {
      objects.emplace_back(Json::Object{{"name", o.name}, {"kind", ipc::manager::kind_name(o.kind)}});
    }
    for (const auto& c : status.clients) {
      // pid and uid are known for Unix socket peers only; a TCP peer is known by its address.
      clients.emplace_back(Json::Object{{"pid", c.pid},
                                        {"uid", c.uid},
                                        {"address", c.address},
                                        {"authenticated", c.authenticated},
                                        {"connected_ms", c.connected_for.count()},
                                        {"transport", c.shared_memory ? "shared memory" : "socket"},
                                        {"this_command", c.caller}});
    }
    print_json(Json::Object{{"address", client.address()}, {"objects", objects}, {"clients", clients}});
    return 0;
  }
  std::printf("manager on %s: %zu object(s), %zu client(s) (this command included)\n", client.address().c_str(),
              status.objects.size(), status.clients.size());
  std::printf("%-32s %s\n", "OBJECT", "KIND");
  for (const auto& o : status.objects) std::printf("%-32s %s\n", o.name.c_str(), ipc::manager::kind_name(o.kind));
  std::printf("%-30s %-6s %-14s %-14s %s\n", "PID / ADDRESS", "UID", "AUTHENTICATED", "TRANSPORT", "CONNECTED");
  for (const auto& c : status.clients) {
    const std::string who = c.address.empty() ? std::to_string(c.pid) : c.address;
    const std::string uid = c.address.empty() ? std::to_string(c.uid) : "-";
    std::printf("%-30s %-6s %-14s %-14s %.1f s%s\n", who.c_str(), uid.c_str(), c.authenticated ? "yes" : "no",
                c.shared_memory ? "shared memory" : "socket", static_cast<double>(c.connected_for.count()) / 1000.0, c.caller ? " (this command)" : "");
  }
  return 0;
}

int cmd_manager_key(const std::vector<std::string>& args) {
  CommandLine cl("manager key FILE [--force]",
                 "Writes a new random Manager key to FILE (mode 0600), for `ipc-manager --key-file FILE` and its\n"
                 "clients (ipc::manager::load_key). Refuses an existing FILE unless --force.",
                 {"FILE"});
  cl.add_options()("force", "replace an existing FILE");
  if (!cl.parse(args)) return 0;
  const auto key = ipc::manager::write_key_file(cl.positional(0), cl.flag("force"));
  if (cl.json()) {
    print_json(Json::Object{{"file", cl.positional(0)}, {"key_bytes", key.size()}, {"mode", "0600"}});
  } else {
    std::printf("wrote a %zu-byte key to %s (mode 0600)\n", key.size(), cl.positional(0).c_str());
  }
  return 0;
}

using Command = std::function<int(const std::vector<std::string>&)>;

// Runs the command named by args[0] of `commands`; `what` names the level ("command", "manager command").
int dispatch(const std::vector<std::pair<std::string, Command>>& commands, const std::vector<std::string>& args,
             const std::string& what) {
  for (const auto& [name, run] : commands) {
    if (name == args[0]) return run(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  throw UsageError{"unknown " + what + " '" + args[0] + "'"};
}

constexpr const char* kManagerUsage =
    "usage: numa_mp manager status ADDRESS [--key-file FILE] [--timeout-ms N] [--json]\n"
    "       numa_mp manager key FILE [--force] [--json]\n";

int cmd_manager(const std::vector<std::string>& args) {
  if (args.empty()) throw UsageError{"manager: missing a manager command (status or key)"};
  if (args[0] == "--help" || args[0] == "-h") {
    std::cout << kManagerUsage;
    return 0;
  }
  return dispatch({{"status", cmd_manager_status}, {"key", cmd_manager_key}}, args, "manager command");
}

}  // namespace

int main(int argc, char** argv) {
  // Options before the command are numa_mp's own (only --help); everything from the command on is the command's.
  int first = 1;
  po::options_description global("options");
  global.add_options()("help,h", "this help");
  while (first < argc && argv[first][0] == '-') ++first;
  try {
    po::variables_map vm;
    try {
      po::store(po::command_line_parser(std::vector<std::string>(argv + 1, argv + first)).options(global).run(), vm);
    } catch (const po::error& e) {
      throw UsageError{e.what()};
    }
    if (vm.count("help")) {
      std::cout << kUsage;
      return 0;
    }
    if (first == argc) throw UsageError{"missing a command"};
    return dispatch({{"topology", cmd_topology},
                     {"segments", cmd_segments},
                     {"inspect", cmd_inspect},
                     {"clean", cmd_clean},
                     {"policy", cmd_policy},
                     {"manager", cmd_manager}},
                    std::vector<std::string>(argv + first, argv + argc), "command");
  } catch (const UsageError& e) {
    std::fprintf(stderr, "numa_mp: %s\nRun 'numa_mp --help' for usage.\n", e.message.c_str());
    return 2;
  } catch (const ipc::Error& e) {
    std::fprintf(stderr, "numa_mp: %s\n", e.what());
    return 1;
  }
}
