// ipc/numa/policy_error.h: the error thrown when a memory policy breaks a rule, naming the rule.
//
// Threads/Processes/Lifetime: an ordinary exception value.
// Errors: PolicyError derives from ipc::InvalidArgument; rule() says which rule, what() says it in words.
//   (A mode the running kernel lacks is not a rule broken by the caller: that is ipc::Unsupported.)
#pragma once

#include <string>

#include "ipc/base/error.h"

namespace ipc::numa {

// Every rule a MemoryPolicy is checked against before any system call. One test per rule (policy_test.cc).
enum class PolicyRule {
  kMalformedNodeList,            // "2-1", "x", "-1", "1 - 2"; in the short form also "1,,2", "1,"
  kNodeBeyondKernelLimit,        // an id >= NodeSet::kMaxNodes
  kUnknownMode,                  // "scatter", "MPOL_FOO"
  kUnknownFlag,                  // "+fast", "MPOL_F_FOO"
  kMalformedPolicyText,          // the short string or JSON object does not have the expected shape
  kBalancingNeedsBind,           // NUMA_BALANCING only with BIND (and PREFERRED_MANY on kernels >= 6.10)
  kStaticAndRelativeExclusive,   // STATIC_NODES and RELATIVE_NODES together
  kDefaultLocalTakeNothing,      // DEFAULT and LOCAL take no nodes and no flags
  kPreferredEmptyNoNodeFlags,    // PREFERRED with no nodes takes neither STATIC_NODES nor RELATIVE_NODES
  kPreferredOneNode,             // PREFERRED names at most one node (PREFERRED_MANY takes several; the OCI form
                                 // takes the lowest of several, as the kernel does)
  kNodesRequired,                // BIND, INTERLEAVE, PREFERRED_MANY, WEIGHTED_INTERLEAVE need >= 1 node
  kNodeNotOnline,                // a node that does not exist or is offline on this machine
};

// A short stable name for a rule ("balancing-needs-bind"), used in messages and tests.
const char* rule_name(PolicyRule rule);

class PolicyError : public InvalidArgument {
 public:
  PolicyError(PolicyRule rule, const std::string& what)
      : InvalidArgument(std::string("memory policy rule '") + rule_name(rule) + "': " + what), rule_(rule) {}
  PolicyRule rule() const noexcept { return rule_; }

 private:
  PolicyRule rule_;
};

}  // namespace ipc::numa
