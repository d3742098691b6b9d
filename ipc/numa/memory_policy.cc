#include "ipc/numa/memory_policy.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>

#include "ipc/base/error.h"
#include "ipc/numa/json_reader.h"
#include "ipc/numa/kernel_abi.h"
#include "ipc/numa/topology.h"

namespace ipc::numa {
namespace {

struct ModeNames {
  Mode mode;
  const char* short_name;
  const char* oci_name;
};
constexpr ModeNames kModes[] = {
    {Mode::kDefault, "default", "MPOL_DEFAULT"},
    {Mode::kLocal, "local", "MPOL_LOCAL"},
    {Mode::kPreferred, "preferred", "MPOL_PREFERRED"},
    {Mode::kBind, "bind", "MPOL_BIND"},
    {Mode::kInterleave, "interleave", "MPOL_INTERLEAVE"},
    {Mode::kPreferredMany, "preferred_many", "MPOL_PREFERRED_MANY"},
    {Mode::kWeightedInterleave, "weighted_interleave", "MPOL_WEIGHTED_INTERLEAVE"},
};

struct FlagNames {
  PolicyFlags flag;
  const char* short_name;
  const char* long_name;
  const char* oci_name;
  int kernel_bit;
};
constexpr FlagNames kFlags[] = {
    {PolicyFlags::kStaticNodes, "static", "static_nodes", "MPOL_F_STATIC_NODES", kernel::kMpolFStaticNodes},
    {PolicyFlags::kRelativeNodes, "relative", "relative_nodes", "MPOL_F_RELATIVE_NODES", kernel::kMpolFRelativeNodes},
    {PolicyFlags::kNumaBalancing, "balancing", "numa_balancing", "MPOL_F_NUMA_BALANCING", kernel::kMpolFNumaBalancing},
};

Mode mode_from_short(std::string_view s) {
  for (const auto& m : kModes) {
    if (s == m.short_name) return m.mode;
  }
  if (s == "preferred-many") return Mode::kPreferredMany;
  if (s == "weighted-interleave") return Mode::kWeightedInterleave;
  throw PolicyError(PolicyRule::kUnknownMode,
                    "unknown mode '" + std::string(s) +
                        "' (expected default, local, preferred, bind, interleave, preferred_many, weighted_interleave)");
}

Mode mode_from_oci(std::string_view s) {
  std::string names;
  for (const auto& m : kModes) {
    if (s == m.oci_name) return m.mode;
    names += std::string(names.empty() ? "" : ", ") + m.oci_name;
  }
  throw PolicyError(PolicyRule::kUnknownMode, "unknown OCI mode '" + std::string(s) + "' (expected one of " + names + ")");
}

PolicyFlags flag_from_short(std::string_view s) {
  for (const auto& f : kFlags) {
    if (s == f.short_name || s == f.long_name) return f.flag;
  }
  throw PolicyError(PolicyRule::kUnknownFlag,
                    "unknown flag '" + std::string(s) + "' (expected static, relative or balancing)");
}

PolicyFlags flag_from_oci(std::string_view s) {
  for (const auto& f : kFlags) {
    if (s == f.oci_name) return f.flag;
  }
  throw PolicyError(PolicyRule::kUnknownFlag, "unknown OCI flag '" + std::string(s) +
                                                  "' (expected MPOL_F_STATIC_NODES, MPOL_F_RELATIVE_NODES or "
                                                  "MPOL_F_NUMA_BALANCING)");
}

// "static+balancing": the short names of the flags in `flags`, joined by `separator`.
std::string flag_names(PolicyFlags flags, const char* separator) {
  std::string out;
  for (const auto& f : kFlags) {
    if (has_flag(flags, f.flag)) out += (out.empty() ? "" : separator) + std::string(f.short_name);
  }
  return out;
}

int kernel_mode_bits(Mode mode, PolicyFlags flags) {
  int bits = static_cast<int>(mode);
  for (const auto& f : kFlags) {
    if (has_flag(flags, f.flag)) bits |= f.kernel_bit;
  }
  return bits;
}

// Asks the kernel whether it accepts `mode_bits` by setting it on a private scratch page that nobody uses.
// EINVAL means the kernel does not know the mode or the combination. The probe names one node this process may
// use, not the policy's nodes: the kernel also answers EINVAL to nodes outside the caller's cpuset, and that is
// no answer about the mode (the result is cached per mode and flags).
bool kernel_accepts(int mode_bits) {
  static std::mutex mu;
  static std::optional<bool> cache[64][8];
  int mode = mode_bits & ~kernel::kMpolModeFlags;
  int flag_index = ((mode_bits & kernel::kMpolFStaticNodes) ? 1 : 0) | ((mode_bits & kernel::kMpolFRelativeNodes) ? 2 : 0) |
                   ((mode_bits & kernel::kMpolFNumaBalancing) ? 4 : 0);
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[mode & 63][flag_index];
  if (slot) return *slot;
  long page = sysconf(_SC_PAGESIZE);
  void* p = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw_errno("mmap (policy probe)");
  NodeSet probe_nodes;
  if (mode != static_cast<int>(Mode::kDefault) && mode != static_cast<int>(Mode::kLocal)) {
    NodeSet allowed;
    int ignored = 0;
    if (get_mempolicy(&ignored, allowed.mutable_mask_words(), NodeSet::mask_bits() + 1, nullptr,
                      MPOL_F_MEMS_ALLOWED) != 0 || allowed.empty()) {
      allowed = NodeSet{0};  // a kernel without NUMA: node 0 is the only one
    }
    probe_nodes.insert(allowed.first());
  }
  long r = mbind(p, page, mode_bits, probe_nodes.empty() ? nullptr : probe_nodes.mask_words(),
                 probe_nodes.empty() ? 0 : NodeSet::mask_bits() + 1, 0);
  int err = errno;
  munmap(p, page);
  if (r != 0 && err != EINVAL) throw SystemError(err, "mbind (policy probe)");
  slot = (r == 0);
  return *slot;
}

}  // namespace

const char* mode_name(Mode mode) {
  for (const auto& m : kModes) {
    if (m.mode == mode) return m.short_name;
  }
  return "unknown";
}

const char* rule_name(PolicyRule rule) {
  switch (rule) {
    case PolicyRule::kMalformedNodeList: return "malformed-node-list";
    case PolicyRule::kNodeBeyondKernelLimit: return "node-beyond-kernel-limit";
    case PolicyRule::kUnknownMode: return "unknown-mode";
    case PolicyRule::kUnknownFlag: return "unknown-flag";
    case PolicyRule::kMalformedPolicyText: return "malformed-policy-text";
    case PolicyRule::kBalancingNeedsBind: return "balancing-needs-bind";
    case PolicyRule::kStaticAndRelativeExclusive: return "static-and-relative-exclusive";
    case PolicyRule::kDefaultLocalTakeNothing: return "default-and-local-take-no-nodes-or-flags";
    case PolicyRule::kPreferredEmptyNoNodeFlags: return "preferred-without-nodes-takes-no-node-flags";
    case PolicyRule::kPreferredOneNode: return "preferred-takes-one-node";
    case PolicyRule::kNodesRequired: return "nodes-required";
    case PolicyRule::kNodeNotOnline: return "node-not-online";
  }
  return "unknown-rule";
}

MemoryPolicy::MemoryPolicy(Mode mode, NodeSet nodes, PolicyFlags flags) : mode_(mode), nodes_(nodes), flags_(flags) {
  validate();
}

void MemoryPolicy::validate() const {
  const std::string name = mode_name(mode_);
  if (static_cast<int>(mode_) < 0 || static_cast<int>(mode_) > static_cast<int>(Mode::kWeightedInterleave)) {
    throw PolicyError(PolicyRule::kUnknownMode, "mode number " + std::to_string(static_cast<int>(mode_)));
  }
  if (static_cast<uint32_t>(flags_) & ~7u) {
    throw PolicyError(PolicyRule::kUnknownFlag, "flag bits " + std::to_string(static_cast<uint32_t>(flags_)));
  }
  const bool is_static = has_flag(flags_, PolicyFlags::kStaticNodes);
  const bool is_relative = has_flag(flags_, PolicyFlags::kRelativeNodes);
  if (mode_ == Mode::kDefault || mode_ == Mode::kLocal) {
    if (!nodes_.empty() || flags_ != PolicyFlags::kNone) {
      const std::string nodes = "nodes '" + nodes_.to_string() + "'", flags = "flags '" + flag_names(flags_, "+") + "'";
      throw PolicyError(PolicyRule::kDefaultLocalTakeNothing,
                        name + " takes no nodes and no flags, but was given " +
                            (nodes_.empty() ? flags : flags_ == PolicyFlags::kNone ? nodes : nodes + " and " + flags));
    }
    return;
  }
  if (is_static && is_relative) {
    throw PolicyError(PolicyRule::kStaticAndRelativeExclusive,
                      "static and relative node flags cannot be combined");
  }
  if (has_flag(flags_, PolicyFlags::kNumaBalancing) && mode_ != Mode::kBind && mode_ != Mode::kPreferredMany) {
    throw PolicyError(PolicyRule::kBalancingNeedsBind,
                      "numa balancing works only with bind (and preferred_many on kernels >= 6.10), not with " + name);
  }
  if (mode_ == Mode::kPreferred) {
    if (nodes_.empty() && (is_static || is_relative)) {
      throw PolicyError(PolicyRule::kPreferredEmptyNoNodeFlags,
                        "preferred without nodes means local allocation and takes neither static nor relative");
    }
    if (nodes_.count() > 1) {
      throw PolicyError(PolicyRule::kPreferredOneNode,
                        "preferred takes one node, not '" + nodes_.to_string() + "' (use preferred_many)");
    }
    return;
  }
  if (nodes_.empty()) throw PolicyError(PolicyRule::kNodesRequired, name + " needs at least one node");
}

void MemoryPolicy::validate_for_this_machine() const {
  validate();
  // Relative node ids name positions within the allowed set, not real nodes, so only plain ids are checked.
  // No nodes (the default policy, local): nothing to check, and no read of sysfs (a pipe is made with one).
  if (!nodes_.empty() && !has_flag(flags_, PolicyFlags::kRelativeNodes)) {
    NodeSet offline = nodes_.minus(Topology::online_nodes());
    if (!offline.empty()) {
      throw PolicyError(PolicyRule::kNodeNotOnline, "node(s) " + offline.to_string() +
                                                        " do not exist or are offline on this machine (online: " +
                                                        Topology::online_nodes().to_string() + ")");
    }
  }
  if (!kernel_accepts(kernel_mode_bits(mode_, flags_))) {
    throw Unsupported("the running kernel does not support memory policy '" + to_string() + "'" +
                      (mode_ == Mode::kWeightedInterleave ? " (weighted_interleave needs Linux >= 6.9)"
                       : mode_ == Mode::kPreferredMany && has_flag(flags_, PolicyFlags::kNumaBalancing)
                           ? " (numa balancing with preferred_many needs Linux >= 6.10)"
                       : mode_ == Mode::kPreferredMany ? " (preferred_many needs Linux >= 5.15)"
                                                       : ""));
  }
}

MemoryPolicy MemoryPolicy::parse(std::string_view text) {
  if (text.empty()) throw PolicyError(PolicyRule::kMalformedPolicyText, "empty policy string");
  std::string_view head = text;
  PolicyFlags flags = PolicyFlags::kNone;
  size_t plus = text.find('+');
  if (plus != std::string_view::npos) {
    head = text.substr(0, plus);
    std::string_view rest = text.substr(plus + 1);
    while (true) {
      size_t next = rest.find('+');
      std::string_view flag = rest.substr(0, next);
      if (flag.empty()) throw PolicyError(PolicyRule::kMalformedPolicyText, "empty flag in '" + std::string(text) + "'");
      flags = flags | flag_from_short(flag);
      if (next == std::string_view::npos) break;
      rest = rest.substr(next + 1);
    }
  }
  size_t colon = head.find(':');
  Mode mode = mode_from_short(head.substr(0, colon));
  NodeSet nodes;
  if (colon != std::string_view::npos) {
    std::string_view list = head.substr(colon + 1);
    if (list.empty()) throw PolicyError(PolicyRule::kMalformedNodeList, "empty node list after ':' in '" + std::string(text) + "'");
    nodes = NodeSet::parse(list);
  }
  return MemoryPolicy(mode, nodes, flags);
}

std::string MemoryPolicy::to_string() const {
  std::string out = mode_name(mode_);
  if (!nodes_.empty()) out += ":" + nodes_.to_string();
  if (flags_ != PolicyFlags::kNone) out += "+" + flag_names(flags_, "+");
  return out;
}

MemoryPolicy MemoryPolicy::from_oci_json(std::string_view json) {
  using internal::JsonValue;
  const JsonValue root = internal::parse_json(json);
  auto malformed = [&](const std::string& what, size_t offset) {
    return PolicyError(PolicyRule::kMalformedPolicyText, what + " (" + internal::json_position(json, offset) + ")");
  };
  if (root.type != JsonValue::Type::kObject) {
    throw malformed(std::string("an OCI memory policy is a JSON object, not ") + internal::json_type_name(root.type),
                    root.offset);
  }
  // Keys other than these three are ignored, as the container runtimes ignore them; null means absent.
  const JsonValue* mode = nullptr;
  const JsonValue* nodes = nullptr;
  const JsonValue* flags = nullptr;
  for (const auto& member : root.members) {
    const JsonValue** slot = member.key == "mode" ? &mode : member.key == "nodes" ? &nodes : member.key == "flags" ? &flags : nullptr;
    if (slot == nullptr) continue;
    if (*slot != nullptr) throw malformed("duplicate key \"" + member.key + "\"", member.key_offset);
    *slot = &member.value;
  }
  auto present = [](const JsonValue* v) { return v != nullptr && v->type != JsonValue::Type::kNull; };
  auto require_type = [&](const JsonValue& v, JsonValue::Type type, const std::string& what) {
    if (v.type != type) {
      throw malformed(what + " must be " + internal::json_type_name(type) + ", not " + internal::json_type_name(v.type),
                      v.offset);
    }
  };
  if (!present(mode)) throw malformed("OCI memory policy without \"mode\"", root.offset);
  require_type(*mode, JsonValue::Type::kString, "\"mode\"");
  const Mode m = mode_from_oci(mode->text);
  NodeSet node_set;
  if (present(nodes)) {
    require_type(*nodes, JsonValue::Type::kString, "\"nodes\"");
    node_set = NodeSet::parse(nodes->text, NodeListSyntax::kKernel);
  }
  // set_mempolicy(2) and mbind(2) take the lowest node of a PREFERRED mask, and the runtimes pass the list on as is.
  if (m == Mode::kPreferred && node_set.count() > 1) node_set = NodeSet{node_set.first()};
  PolicyFlags flag_set = PolicyFlags::kNone;
  if (present(flags)) {
    require_type(*flags, JsonValue::Type::kArray, "\"flags\"");
    for (size_t i = 0; i < flags->items.size(); ++i) {
      require_type(flags->items[i], JsonValue::Type::kString, "\"flags\" item " + std::to_string(i + 1));
      flag_set = flag_set | flag_from_oci(flags->items[i].text);
    }
  }
  return MemoryPolicy(m, node_set, flag_set);
}

std::string MemoryPolicy::to_oci_json() const {
  std::string out;
  for (const auto& m : kModes) {
    if (m.mode == mode_) out = std::string("{\"mode\": \"") + m.oci_name + "\"";
  }
  if (!nodes_.empty()) out += ", \"nodes\": \"" + nodes_.to_string() + "\"";
  std::string flags;
  for (const auto& f : kFlags) {
    if (has_flag(flags_, f.flag)) flags += std::string(flags.empty() ? "" : ", ") + "\"" + f.oci_name + "\"";
  }
  if (!flags.empty()) out += ", \"flags\": [" + flags + "]";
  return out + "}";
}

void MemoryPolicy::apply(void* addr, size_t length) const {
  validate_for_this_machine();
  long r = mbind(addr, length, kernel_mode_bits(mode_, flags_), nodes_.empty() ? nullptr : nodes_.mask_words(),
                 nodes_.empty() ? 0 : NodeSet::mask_bits() + 1, 0);
  if (r != 0) throw_errno("mbind(" + to_string() + ")");
}

MemoryPolicy MemoryPolicy::of_address(const void* addr) {
  int mode_bits = 0;
  NodeSet nodes;
  if (get_mempolicy(&mode_bits, nodes.mutable_mask_words(), NodeSet::mask_bits() + 1,
                    const_cast<void*>(addr), MPOL_F_ADDR) != 0) {
    throw_errno("get_mempolicy(MPOL_F_ADDR)");
  }
  PolicyFlags flags = PolicyFlags::kNone;
  for (const auto& f : kFlags) {
    if (mode_bits & f.kernel_bit) flags = flags | f.flag;
  }
  Mode mode = static_cast<Mode>(mode_bits & ~kernel::kMpolModeFlags);
  // The kernel reports no nodes for DEFAULT and LOCAL, and for PREFERRED without a node.
  return MemoryPolicy(mode, nodes, flags);
}

}  // namespace ipc::numa
