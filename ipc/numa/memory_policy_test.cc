#include "ipc/numa/memory_policy.h"

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "ipc/numa/topology.h"

using ipc::numa::MemoryPolicy;
using ipc::numa::Mode;
using ipc::numa::NodeListSyntax;
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
  for (const char* bad : {"2-1", "x", "-1", "1,,2", "1,", ",1", "1-", "0-x", "1 2", "+1", " 1", "1-2-3"}) {
    INFO(bad);
    CHECK(rule_of([&] { NodeSet::parse(bad); }) == PolicyRule::kMalformedNodeList);
  }
}

TEST_CASE("the kernel's list syntax also takes empty elements and spaces around commas", "[numa][policy]") {
  CHECK(NodeSet::parse(",0,1,", NodeListSyntax::kKernel) == NodeSet{0, 1});
  CHECK(NodeSet::parse(" 0 , 2 ", NodeListSyntax::kKernel) == NodeSet{0, 2});
  CHECK(NodeSet::parse(",", NodeListSyntax::kKernel).empty());
  for (const char* bad : {"1 - 2", "1 2", "2-1", "x", "-1", "0-", "-"}) {
    INFO(bad);
    CHECK(rule_of([&] { NodeSet::parse(bad, NodeListSyntax::kKernel); }) == PolicyRule::kMalformedNodeList);
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

namespace {

// One OCI object and what the parser must say about it: the policy it is read as (short form), or the rule it
// breaks and words its message must contain.
struct OciCase {
  std::string json;
  std::optional<std::string> accepted_as;
  PolicyRule rule = PolicyRule::kMalformedPolicyText;
  std::vector<std::string> words;
};

OciCase accepts(std::string json, std::string policy) { return {std::move(json), std::move(policy), {}, {}}; }
OciCase rejects(std::string json, PolicyRule rule, std::vector<std::string> words) {
  return {std::move(json), std::nullopt, rule, std::move(words)};
}
std::string bind_nodes(const std::string& nodes) { return R"({"mode": "MPOL_BIND", "nodes": ")" + nodes + R"("})"; }

}  // namespace

// The verdicts of the container runtimes (runc, crun, youki) and of the kernel's own list parser where they agree,
// and the messages issue 12 asks for.
TEST_CASE("the OCI parser gives the runtimes' verdicts with messages that say what is wrong", "[numa][policy][oci]") {
  const std::vector<OciCase> cases = {
      // Node lists as the kernel and runc read them: empty elements and spaces around commas.
      accepts(bind_nodes("0,"), "bind:0"),
      accepts(bind_nodes(",0,1,"), "bind:0-1"),
      accepts(bind_nodes("0,,1"), "bind:0-1"),
      accepts(bind_nodes("1, 2, 1-2"), "bind:1-2"),
      accepts(bind_nodes(" 0 , 2 "), "bind:0,2"),
      accepts(bind_nodes("127-129, 1"), "bind:1,127-129"),
      rejects(bind_nodes("1 - 2"), PolicyRule::kMalformedNodeList, {"spaces", "'1 - 2'"}),
      rejects(bind_nodes("1 2"), PolicyRule::kMalformedNodeList, {"spaces", "'1 2'"}),
      rejects(bind_nodes("2-1"), PolicyRule::kMalformedNodeList, {"backwards", "'2-1'"}),
      rejects(bind_nodes("x"), PolicyRule::kMalformedNodeList, {"'x'", "not a node id"}),
      rejects(bind_nodes("-1"), PolicyRule::kMalformedNodeList, {"'-1'", "lacks its first node"}),
      rejects(bind_nodes("0-"), PolicyRule::kMalformedNodeList, {"'0-'", "lacks its last node"}),
      rejects(bind_nodes("-"), PolicyRule::kMalformedNodeList, {"'-'", "first and last node"}),
      rejects(bind_nodes("1024"), PolicyRule::kNodeBeyondKernelLimit, {"1024", "0..1023"}),
      rejects(bind_nodes("0-1024"), PolicyRule::kNodeBeyondKernelLimit, {"1024", "0..1023"}),
      accepts(bind_nodes("1023"), "bind:1023"),
      // A list that names no node, for a mode that needs one.
      rejects(bind_nodes(","), PolicyRule::kNodesRequired, {"bind", "at least one node"}),
      rejects(bind_nodes(""), PolicyRule::kNodesRequired, {"bind", "at least one node"}),
      rejects(R"({"mode": "MPOL_INTERLEAVE"})", PolicyRule::kNodesRequired, {"interleave"}),
      // PREFERRED with several nodes: the lowest one, as set_mempolicy(2) takes it.
      accepts(R"({"mode": "MPOL_PREFERRED", "nodes": "0,1"})", "preferred:0"),
      accepts(R"({"mode": "MPOL_PREFERRED", "nodes": "3,1-2"})", "preferred:1"),
      accepts(R"({"mode": "MPOL_PREFERRED"})", "preferred"),
      // null is absent (Go's encoding/json writes it for nil fields).
      accepts(R"({"mode": "MPOL_BIND", "nodes": "0", "flags": null})", "bind:0"),
      accepts(R"({"mode": "MPOL_LOCAL", "nodes": null, "flags": null})", "local"),
      accepts(R"({"mode": "MPOL_DEFAULT", "nodes": "", "flags": []})", "default"),
      rejects(R"({"mode": null})", PolicyRule::kMalformedPolicyText, {"without \"mode\""}),
      // Unknown keys are ignored, as the runtimes ignore them.
      accepts(R"({"mode": "MPOL_BIND", "nodes": "1", "comment": [1, {"x": null}]})", "bind:1"),
      // Numa balancing: bind everywhere, preferred_many (Linux >= 6.10; checked by validate_for_this_machine).
      accepts(R"({"mode": "MPOL_PREFERRED_MANY", "nodes": "0-1", "flags": ["MPOL_F_NUMA_BALANCING"]})",
              "preferred_many:0-1+balancing"),
      accepts(R"({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]})", "bind:0+balancing"),
      rejects(R"({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]})",
              PolicyRule::kBalancingNeedsBind, {"interleave"}),
      rejects(R"({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]})",
              PolicyRule::kStaticAndRelativeExclusive, {"static", "relative"}),
      // A duplicated key is refused by name.
      rejects(R"({"mode": "MPOL_BIND", "nodes": "0", "mode": "MPOL_LOCAL"})", PolicyRule::kMalformedPolicyText,
              {"duplicate key \"mode\"", "line 1, column 37"}),
      rejects(R"({"mode": "MPOL_BIND", "nodes": "0", "nodes": "1"})", PolicyRule::kMalformedPolicyText,
              {"duplicate key \"nodes\""}),
      // JSON syntax errors: line and column, in words.
      rejects("{", PolicyRule::kMalformedPolicyText, {"JSON syntax error", "line 1, column 2", "the end of the input"}),
      rejects("", PolicyRule::kMalformedPolicyText, {"JSON syntax error", "line 1, column 1"}),
      rejects("{\n  \"mode\": \"MPOL_BIND\",\n  \"nodes\": 0-1\n}", PolicyRule::kMalformedPolicyText,
              {"JSON syntax error", "line 3, column 13", "'-'"}),
      rejects(R"({"mode": "MPOL_BIND" "nodes": "0"})", PolicyRule::kMalformedPolicyText,
              {"line 1, column 22", "expected ',' or '}'", "\"mode\""}),
      rejects(R"({"mode": "MPOL_BIND"}x)", PolicyRule::kMalformedPolicyText, {"line 1, column 22", "'x'"}),
      rejects(R"({"mode": "MPOL_BIND)", PolicyRule::kMalformedPolicyText, {"line 1, column 10", "not closed"}),
      // Wrong-typed fields are named.
      rejects(R"({"mode": "MPOL_BIND", "nodes": 0})", PolicyRule::kMalformedPolicyText,
              {"\"nodes\" must be a string, not a number", "column 32"}),
      rejects(R"({"mode": 2})", PolicyRule::kMalformedPolicyText, {"\"mode\" must be a string, not a number"}),
      rejects(R"({"mode": "MPOL_BIND", "nodes": "0", "flags": "MPOL_F_STATIC_NODES"})",
              PolicyRule::kMalformedPolicyText, {"\"flags\" must be an array, not a string"}),
      rejects(R"({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", 7]})",
              PolicyRule::kMalformedPolicyText, {"\"flags\" item 2 must be a string, not a number"}),
      rejects("[1, 2]", PolicyRule::kMalformedPolicyText, {"a JSON object, not an array"}),
      // Unknown names: the mode error lists the seven modes.
      rejects(R"({"mode": "MPOL_SCATTER"})", PolicyRule::kUnknownMode,
              {"'MPOL_SCATTER'", "MPOL_DEFAULT", "MPOL_LOCAL", "MPOL_PREFERRED,", "MPOL_BIND", "MPOL_INTERLEAVE",
               "MPOL_PREFERRED_MANY", "MPOL_WEIGHTED_INTERLEAVE"}),
      rejects(R"({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_FAST"]})", PolicyRule::kUnknownFlag,
              {"'MPOL_F_FAST'"}),
      // default and local say which of nodes and flags they were given.
      rejects(R"({"mode": "MPOL_DEFAULT", "nodes": "0"})", PolicyRule::kDefaultLocalTakeNothing,
              {"was given nodes '0'"}),
      rejects(R"({"mode": "MPOL_LOCAL", "flags": ["MPOL_F_STATIC_NODES"]})", PolicyRule::kDefaultLocalTakeNothing,
              {"was given flags 'static'"}),
      rejects(R"({"mode": "MPOL_LOCAL", "nodes": "1", "flags": ["MPOL_F_NUMA_BALANCING"]})",
              PolicyRule::kDefaultLocalTakeNothing, {"was given nodes '1' and flags 'balancing'"}),
  };
  for (const OciCase& c : cases) {
    INFO(c.json);
    if (c.accepted_as) {
      CHECK(MemoryPolicy::from_oci_json(c.json).to_string() == *c.accepted_as);  // a throw fails the check
      continue;
    }
    try {
      MemoryPolicy p = MemoryPolicy::from_oci_json(c.json);
      FAIL_CHECK("accepted as " + p.to_string());
    } catch (const PolicyError& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK(ipc::numa::rule_name(e.rule()) == std::string(ipc::numa::rule_name(c.rule)));
      for (const std::string& word : c.words) CHECK(what.find(word) != std::string::npos);
      // No library internals in any message.
      for (const char* internal : {"kj", "capnp", ".c++", ".cc:"}) CHECK(what.find(internal) == std::string::npos);
    }
  }
}

TEST_CASE("the short form stays strict where the OCI form follows the runtimes", "[numa][policy]") {
  CHECK(rule_of([] { MemoryPolicy::parse("bind:0,"); }) == PolicyRule::kMalformedNodeList);
  CHECK(rule_of([] { MemoryPolicy::parse("bind:0, 1"); }) == PolicyRule::kMalformedNodeList);
  CHECK(rule_of([] { MemoryPolicy::parse("preferred:0,1"); }) == PolicyRule::kPreferredOneNode);
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
