// ipc/numa/node_set.h: a set of NUMA node ids, in the kernel's list syntax ("0-3,7").
//
// Threads: a value type; const methods are safe from any thread.
// Processes: trivially copyable and address-free, so it may be stored in shared memory.
// Lifetime: plain value.
// Errors: parse() throws numa::PolicyError (rule kMalformedNodeList or kNodeBeyondKernelLimit) naming the
//   offending text; insert() of an id outside [0, kMaxNodes) throws the same.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ipc::numa {

// Which node list syntax parse() accepts.
enum class NodeListSyntax {
  // "0-3,7": elements separated by single commas, no spaces. The short policy form and every printed list.
  kStrict,
  // What the kernel's list parser and the container runtimes accept (the OCI form): also empty elements and spaces
  // around commas, so "0,", ",0,1,", "0,,1", " 0 , 2 " and "1, 2, 1-2" are lists too. Never spaces inside an element
  // ("1 - 2", "1 2").
  kKernel,
};

class NodeSet {
 public:
  // The largest node count a Linux kernel can be built with (CONFIG_NODES_SHIFT=10). Ids are 0..kMaxNodes-1.
  static constexpr int kMaxNodes = 1024;

  NodeSet() = default;
  NodeSet(std::initializer_list<int> ids);

  // Parses "0-3,7", "1", "" (empty set). Both syntaxes reject "2-1", "x", "-1", "0-", "1 2", ids >= kMaxNodes;
  // kStrict also rejects empty elements ("1,,2", "1,", ",1"). A list may name no node at all (kKernel: ",").
  static NodeSet parse(std::string_view text, NodeListSyntax syntax = NodeListSyntax::kStrict);

  void insert(int id);
  bool contains(int id) const;
  bool empty() const;
  int count() const;
  // Smallest / largest id; REQUIRES: !empty().
  int first() const;
  int last() const;
  std::vector<int> ids() const;
  // Ids in this set that are not in `other`.
  NodeSet minus(const NodeSet& other) const;

  // Canonical list syntax with ranges collapsed: {0,1,2,3,7} -> "0-3,7"; empty -> "".
  std::string to_string() const;

  // The raw bitmask in the layout mbind/set_mempolicy expect (unsigned long words, bit n = node n).
  const unsigned long* mask_words() const { return words_.data(); }
  // For get_mempolicy(2), which fills a mask in.
  unsigned long* mutable_mask_words() { return words_.data(); }
  static constexpr unsigned long mask_bits() { return kMaxNodes; }

  friend bool operator==(const NodeSet&, const NodeSet&) = default;

 private:
  static constexpr int kBitsPerWord = 8 * sizeof(unsigned long);
  std::array<unsigned long, kMaxNodes / kBitsPerWord> words_{};
};

}  // namespace ipc::numa
