#include "ipc/numa/memory_policy.h"

#include <catch2/catch.hpp>

#include "ipc/numa/topology.h"

using ipc::numa::MemoryPolicy;
using ipc::numa::Mode;
using ipc::numa::NodeSet;
using ipc::numa::PolicyError;
using ipc::numa::PolicyFlags;
using ipc::numa::PolicyRule;

namespace {

// Runs `f` and returns the rule of the PolicyError it throws; fails the test if it throws nothing else.
template <typename F>
PolicyRule rule_of(F&& f) {
  try {
    f();
  } catch (const PolicyError& e) {
    std::string what = e.what();
    CHECK(what.find(ipc::numa::rule_name(e.rule())) != std::string::npos);  // the message names the rule
    return e.rule();
  }
  FAIL("expected a PolicyError");
  return PolicyRule::kUnknownMode;
}

}  // namespace

TEST_CASE("node lists parse ranges and singles and print back collapsed", "[numa][policy]") {
  CHECK(NodeSet::parse("0-3,7").ids() == std::vector<int>{0, 1, 2, 3, 7});
  CHECK(NodeSet::parse("0-3,7").to_string() == "0-3,7");
  CHECK(NodeSet::parse("3,1,2").to_string() == "1-3");
  CHECK(NodeSet::parse("5").count() == 1);
  CHECK(NodeSet::parse("").empty());
  CHECK(NodeSet::parse("1023").contains(1023));
}

TEST_CASE("malformed node lists are rejected naming the rule", "[numa][policy]") {
  for (const char* bad : {"2-1", "x", "-1", "1,,2", "1,", ",1", "1-", "0-x", "1 2", "+1"}) {
    INFO(bad);
    CHECK(rule_of([&] { NodeSet::parse(bad); }) == PolicyRule::kMalformedNodeList);
  }
}

TEST_CASE("node ids beyond the kernel's limit are rejected", "[numa][policy]") {
  CHECK(rule_of([] { NodeSet::parse("1024"); }) == PolicyRule::kNodeBeyondKernelLimit);
  CHECK(rule_of([] { NodeSet::parse("0-99999999999"); }) == PolicyRule::kNodeBeyondKernelLimit);
  CHECK(rule_of([] { NodeSet{}.insert(-3); }) == PolicyRule::kNodeBeyondKernelLimit);
}

TEST_CASE("short strings parse every mode and flag", "[numa][policy]") {
  CHECK(MemoryPolicy::parse("default") == MemoryPolicy());
  CHECK(MemoryPolicy::parse("local").mode() == Mode::kLocal);
  CHECK(MemoryPolicy::parse("preferred:0") == MemoryPolicy::preferred(0));
  CHECK(MemoryPolicy::parse("preferred").nodes().empty());
  CHECK(MemoryPolicy::parse("bind:1") == MemoryPolicy::bind({1}));
  CHECK(MemoryPolicy::parse("interleave:0-3") == MemoryPolicy::interleave(NodeSet::parse("0-3")));
  CHECK(MemoryPolicy::parse("preferred_many:0,2").mode() == Mode::kPreferredMany);
  CHECK(MemoryPolicy::parse("preferred-many:0,2").mode() == Mode::kPreferredMany);
  CHECK(MemoryPolicy::parse("weighted_interleave:0-1").mode() == Mode::kWeightedInterleave);
  auto p = MemoryPolicy::parse("bind:0,2+static_nodes+numa_balancing");
  CHECK(p.flags() == (PolicyFlags::kStaticNodes | PolicyFlags::kNumaBalancing));
  CHECK(MemoryPolicy::parse("interleave:0-1+relative").flags() == PolicyFlags::kRelativeNodes);
}

TEST_CASE("every policy prints and parses back in both forms", "[numa][policy]") {
  for (const char* text :
       {"default", "local", "preferred", "preferred:3", "bind:0-3,7", "bind:1+static", "bind:0+balancing",
        "bind:0-1+static+balancing", "interleave:0-3+relative", "preferred_many:0,2", "preferred_many:1+balancing",
        "weighted_interleave:0-1", "preferred:1+static"}) {
    INFO(text);
    MemoryPolicy p = MemoryPolicy::parse(text);
    CHECK(p.to_string() == text);
    CHECK(MemoryPolicy::from_oci_json(p.to_oci_json()) == p);
  }
}

TEST_CASE("the OCI runtime-spec object parses", "[numa][policy]") {
  auto p = MemoryPolicy::from_oci_json(R"({"mode": "MPOL_BIND", "nodes": "0,1", "flags": ["MPOL_F_STATIC_NODES"]})");
  CHECK(p.mode() == Mode::kBind);
  CHECK(p.nodes() == NodeSet{0, 1});
  CHECK(p.flags() == PolicyFlags::kStaticNodes);
  CHECK(p.to_oci_json() == R"({"mode": "MPOL_BIND", "nodes": "0-1", "flags": ["MPOL_F_STATIC_NODES"]})");
  CHECK(MemoryPolicy::from_oci_json(R"({"mode": "MPOL_LOCAL"})").mode() == Mode::kLocal);
  CHECK(MemoryPolicy::from_oci_json(R"({"mode":"MPOL_WEIGHTED_INTERLEAVE","nodes":"0-3"})").nodes().count() == 4);
}

TEST_CASE("bad OCI objects get a clear error", "[numa][policy]") {
  CHECK(rule_of([] { MemoryPolicy::from_oci_json("{"); }) == PolicyRule::kMalformedPolicyText);
  CHECK(rule_of([] { MemoryPolicy::from_oci_json("[1,2]"); }) == PolicyRule::kMalformedPolicyText);
  CHECK(rule_of([] { MemoryPolicy::from_oci_json(R"({"nodes": "0"})"); }) == PolicyRule::kMalformedPolicyText);
  CHECK(rule_of([] { MemoryPolicy::from_oci_json(R"({"mode": "MPOL_SCATTER"})"); }) == PolicyRule::kUnknownMode);
  CHECK(rule_of([] { MemoryPolicy::from_oci_json(R"({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_FAST"]})"); }) ==
        PolicyRule::kUnknownFlag);
  CHECK(rule_of([] { MemoryPolicy::from_oci_json(R"({"mode": "MPOL_BIND", "nodes": "2-1"})"); }) ==
        PolicyRule::kMalformedNodeList);
  CHECK(rule_of([] { MemoryPolicy::from_oci_json(R"({"mode": "MPOL_BIND"})"); }) == PolicyRule::kNodesRequired);
}

TEST_CASE("bad short strings get a clear error", "[numa][policy]") {
  CHECK(rule_of([] { MemoryPolicy::parse(""); }) == PolicyRule::kMalformedPolicyText);
  CHECK(rule_of([] { MemoryPolicy::parse("scatter:0"); }) == PolicyRule::kUnknownMode);
  CHECK(rule_of([] { MemoryPolicy::parse("bind:0+fast"); }) == PolicyRule::kUnknownFlag);
  CHECK(rule_of([] { MemoryPolicy::parse("bind:0+"); }) == PolicyRule::kMalformedPolicyText);
  CHECK(rule_of([] { MemoryPolicy::parse("bind:"); }) == PolicyRule::kMalformedNodeList);
  CHECK(rule_of([] { MemoryPolicy::parse("bind:1,,2"); }) == PolicyRule::kMalformedNodeList);
}

TEST_CASE("numa balancing is accepted with bind and preferred_many only", "[numa][policy]") {
  CHECK_NOTHROW(MemoryPolicy(Mode::kBind, {0}, PolicyFlags::kNumaBalancing));
  CHECK_NOTHROW(MemoryPolicy(Mode::kPreferredMany, {0}, PolicyFlags::kNumaBalancing));
  for (Mode m : {Mode::kInterleave, Mode::kPreferred, Mode::kWeightedInterleave}) {
    CHECK(rule_of([&] { MemoryPolicy(m, {0}, PolicyFlags::kNumaBalancing); }) == PolicyRule::kBalancingNeedsBind);
  }
}

TEST_CASE("static and relative node flags are mutually exclusive", "[numa][policy]") {
  CHECK(rule_of([] { MemoryPolicy::parse("interleave:0+static+relative"); }) ==
        PolicyRule::kStaticAndRelativeExclusive);
}

TEST_CASE("default and local take no nodes and no flags", "[numa][policy]") {
  CHECK(rule_of([] { MemoryPolicy::parse("default:0"); }) == PolicyRule::kDefaultLocalTakeNothing);
  CHECK(rule_of([] { MemoryPolicy::parse("local:0"); }) == PolicyRule::kDefaultLocalTakeNothing);
  CHECK(rule_of([] { MemoryPolicy::parse("local+static"); }) == PolicyRule::kDefaultLocalTakeNothing);
  CHECK(rule_of([] { MemoryPolicy::parse("default+balancing"); }) == PolicyRule::kDefaultLocalTakeNothing);
}

TEST_CASE("preferred without nodes takes neither static nor relative", "[numa][policy]") {
  CHECK(rule_of([] { MemoryPolicy::parse("preferred+static"); }) == PolicyRule::kPreferredEmptyNoNodeFlags);
  CHECK(rule_of([] { MemoryPolicy::parse("preferred+relative"); }) == PolicyRule::kPreferredEmptyNoNodeFlags);
  CHECK_NOTHROW(MemoryPolicy::parse("preferred:0+static"));
}

TEST_CASE("preferred names one node", "[numa][policy]") {
  CHECK(rule_of([] { MemoryPolicy::parse("preferred:0-1"); }) == PolicyRule::kPreferredOneNode);
}

TEST_CASE("bind, interleave, preferred_many and weighted_interleave need a node", "[numa][policy]") {
  for (const char* mode : {"bind", "interleave", "preferred_many", "weighted_interleave"}) {
    INFO(mode);
    CHECK(rule_of([&] { MemoryPolicy::parse(mode); }) == PolicyRule::kNodesRequired);
  }
}

TEST_CASE("nodes that are not online on this machine are refused", "[numa][policy]") {
  int absent = ipc::numa::Topology::online_nodes().last() + 1;
  MemoryPolicy p = MemoryPolicy::bind({absent});  // structurally fine
  CHECK(rule_of([&] { p.validate_for_this_machine(); }) == PolicyRule::kNodeNotOnline);
  try {
    p.validate_for_this_machine();
  } catch (const PolicyError& e) {
    CHECK(std::string(e.what()).find(std::to_string(absent)) != std::string::npos);
  }
  // Relative ids name positions, not nodes, so they are not checked against the online set.
  CHECK_NOTHROW(MemoryPolicy::parse("interleave:0+relative").validate_for_this_machine());
}
