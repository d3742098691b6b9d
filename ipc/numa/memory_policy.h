// ipc/numa/memory_policy.h: a Linux NUMA memory policy (mode, nodes, flags) as a value: built in code, parsed
// from a short string or the OCI runtime-spec JSON object, validated, printed back, and applied to memory.
//
// Threads: a value type; const methods are safe from any thread.
// Processes: trivially copyable and address-free, so segments store their policy in their header.
// Lifetime: plain value. apply() changes the kernel's policy of a mapping; for shm/tmpfs/memfd objects that policy
//   is *shared*: it lives with the object and governs pages that any process later faults in.
// Errors: every rule is checked before any system call. Breaking a rule throws numa::PolicyError naming it
//   (policy_error.h). A node that is offline or absent throws PolicyError(kNodeNotOnline) from
//   validate_for_this_machine(). A mode or flag the running kernel lacks throws ipc::Unsupported naming it.
//   A failing system call throws ipc::SystemError.
//
// Short string syntax:   MODE[:NODES][+FLAG...]
//   MODE  default | local | preferred | bind | interleave | preferred_many | weighted_interleave
//   NODES the kernel list syntax, "0-3,7"
//   FLAG  static | relative | balancing     (long forms static_nodes, relative_nodes, numa_balancing accepted)
//   e.g. "interleave:0-3", "bind:1+balancing", "preferred:0", "local", "bind:0,2+static".
// OCI JSON (runtime-spec linux.memoryPolicy):
//   {"mode": "MPOL_INTERLEAVE", "nodes": "0,1", "flags": ["MPOL_F_STATIC_NODES"]}
//   Read as the container runtimes (runc, crun, youki) read it where they and the kernel agree: "nodes" in the
//   kernel's list syntax (empty elements and spaces around commas allowed, NodeListSyntax::kKernel); MPOL_PREFERRED
//   with several nodes means the lowest of them, as set_mempolicy(2) takes it; "nodes": null and "flags": null are
//   absent; other keys are ignored; a repeated key is refused by name. Errors give the line and column.
//
// NUMA_BALANCING: the kernel accepts it with BIND since 5.12 and also with PREFERRED_MANY since 6.10. This library
// accepts BIND everywhere, PREFERRED_MANY where the running kernel accepts it (checked by
// validate_for_this_machine(), which throws ipc::Unsupported on older kernels), and nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ipc/numa/node_set.h"
#include "ipc/numa/policy_error.h"

namespace ipc::numa {

// The seven kernel modes. Values are the kernel's MPOL_* numbers.
enum class Mode : int {
  kDefault = 0,
  kPreferred = 1,
  kBind = 2,
  kInterleave = 3,
  kLocal = 4,
  kPreferredMany = 5,
  kWeightedInterleave = 6,
};

// Mode flags, combinable with |.
enum class PolicyFlags : uint32_t {
  kNone = 0,
  kStaticNodes = 1u << 0,
  kRelativeNodes = 1u << 1,
  kNumaBalancing = 1u << 2,
};
constexpr PolicyFlags operator|(PolicyFlags a, PolicyFlags b) {
  return static_cast<PolicyFlags>(static_cast<uint32_t>(a) | static_cast<uint32_t>(b));
}
constexpr bool has_flag(PolicyFlags set, PolicyFlags f) {
  return (static_cast<uint32_t>(set) & static_cast<uint32_t>(f)) != 0;
}

const char* mode_name(Mode mode);  // "interleave"

class MemoryPolicy {
 public:
  // The process default (MPOL_DEFAULT): what memory gets when nobody sets a policy.
  MemoryPolicy() = default;
  // Builds and validates (validate()); throws PolicyError on a broken rule.
  MemoryPolicy(Mode mode, NodeSet nodes, PolicyFlags flags = PolicyFlags::kNone);

  static MemoryPolicy default_policy() { return MemoryPolicy(); }
  static MemoryPolicy local() { return MemoryPolicy(Mode::kLocal, {}); }
  static MemoryPolicy preferred(int node) { return MemoryPolicy(Mode::kPreferred, {node}); }
  static MemoryPolicy bind(NodeSet nodes) { return MemoryPolicy(Mode::kBind, nodes); }
  static MemoryPolicy interleave(NodeSet nodes) { return MemoryPolicy(Mode::kInterleave, nodes); }
  static MemoryPolicy preferred_many(NodeSet nodes) { return MemoryPolicy(Mode::kPreferredMany, nodes); }
  static MemoryPolicy weighted_interleave(NodeSet nodes) { return MemoryPolicy(Mode::kWeightedInterleave, nodes); }

  // Parses the short string syntax (see the top of this file). Throws PolicyError.
  static MemoryPolicy parse(std::string_view text);
  // Parses the OCI runtime-spec object (see the top of this file). Throws PolicyError (kMalformedPolicyText for bad
  // JSON, a wrong-typed or repeated field, or a missing mode).
  static MemoryPolicy from_oci_json(std::string_view json);

  Mode mode() const { return mode_; }
  const NodeSet& nodes() const { return nodes_; }
  PolicyFlags flags() const { return flags_; }

  // Short string form; parse(to_string()) == *this.
  std::string to_string() const;
  // OCI JSON form; from_oci_json(to_oci_json()) == *this.
  std::string to_oci_json() const;

  // Checks the rules that do not depend on the machine. The constructor already calls it.
  void validate() const;
  // Checks the rules that do: every node is online, and the running kernel has the mode and flags.
  // Throws PolicyError(kNodeNotOnline) or ipc::Unsupported.
  void validate_for_this_machine() const;

  // Sets this policy on [addr, addr + length) with mbind(2); call before the first touch, since pages already
  // present keep their place. `addr` must be page-aligned. Validates for this machine first.
  void apply(void* addr, size_t length) const;

  // The policy the kernel holds for the mapping containing `addr` (get_mempolicy(MPOL_F_ADDR)).
  static MemoryPolicy of_address(const void* addr);

  friend bool operator==(const MemoryPolicy&, const MemoryPolicy&) = default;

 private:
  Mode mode_ = Mode::kDefault;
  NodeSet nodes_;
  PolicyFlags flags_ = PolicyFlags::kNone;
};

}  // namespace ipc::numa
