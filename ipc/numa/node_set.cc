#include "ipc/numa/node_set.h"

#include <algorithm>
#include <charconv>

#include "ipc/numa/policy_error.h"

namespace ipc::numa {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

[[noreturn]] void malformed(std::string_view whole, const std::string& what) {
  throw PolicyError(PolicyRule::kMalformedNodeList, what + " in node list '" + std::string(whole) + "'");
}

// One node id: decimal digits only, below kMaxNodes.
int parse_id(std::string_view whole, std::string_view part) {
  int value = 0;
  auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
  const bool all_digits = !part.empty() && part.find_first_not_of("0123456789") == std::string_view::npos;
  if (all_digits && (ec == std::errc::result_out_of_range || value >= NodeSet::kMaxNodes)) {
    throw PolicyError(PolicyRule::kNodeBeyondKernelLimit,
                      "node id " + std::string(part) + " in node list '" + std::string(whole) +
                          "' is too large: ids are 0.." + std::to_string(NodeSet::kMaxNodes - 1));
  }
  if (!all_digits || ec != std::errc() || end != part.data() + part.size()) {
    malformed(whole, "'" + std::string(part) + "' is not a node id");
  }
  return value;
}

}  // namespace

NodeSet::NodeSet(std::initializer_list<int> ids) {
  for (int id : ids) insert(id);
}

NodeSet NodeSet::parse(std::string_view text, NodeListSyntax syntax) {
  NodeSet set;
  if (text.empty()) return set;
  const bool kernel = syntax == NodeListSyntax::kKernel;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    std::string_view element =
        text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (kernel) element = trim(element);
    if (element.empty()) {
      if (!kernel) malformed(text, "empty element (a comma with no node before or after it)");
    } else if (std::find_if(element.begin(), element.end(), is_space) != element.end()) {
      malformed(text, "spaces inside '" + std::string(element) + "'" +
                          (kernel ? " (spaces are allowed only around commas)" : " (the short form has no spaces)"));
    } else if (size_t dash = element.find('-'); dash == std::string_view::npos) {
      set.insert(parse_id(text, element));
    } else {
      const std::string_view lo_text = element.substr(0, dash), hi_text = element.substr(dash + 1);
      if (lo_text.empty() || hi_text.empty()) {
        malformed(text, "range '" + std::string(element) + "' lacks its " +
                            (lo_text.empty() && hi_text.empty() ? "first and last node"
                             : lo_text.empty()                  ? "first node"
                                                                : "last node"));
      }
      const int lo = parse_id(text, lo_text);
      const int hi = parse_id(text, hi_text);
      if (lo > hi) malformed(text, "range '" + std::string(element) + "' runs backwards");
      for (int id = lo; id <= hi; ++id) set.insert(id);
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return set;
}

void NodeSet::insert(int id) {
  if (id < 0 || id >= kMaxNodes) {
    throw PolicyError(PolicyRule::kNodeBeyondKernelLimit,
                      "node id " + std::to_string(id) + " is outside the ids 0.." + std::to_string(kMaxNodes - 1));
  }
  words_[id / kBitsPerWord] |= 1UL << (id % kBitsPerWord);
}

bool NodeSet::contains(int id) const {
  return id >= 0 && id < kMaxNodes && (words_[id / kBitsPerWord] >> (id % kBitsPerWord)) & 1UL;
}

bool NodeSet::empty() const {
  for (auto w : words_) if (w) return false;
  return true;
}

int NodeSet::count() const {
  int n = 0;
  for (auto w : words_) n += __builtin_popcountl(w);
  return n;
}

int NodeSet::first() const {
  for (int id = 0; id < kMaxNodes; ++id) if (contains(id)) return id;
  return -1;
}

int NodeSet::last() const {
  for (int id = kMaxNodes - 1; id >= 0; --id) if (contains(id)) return id;
  return -1;
}

std::vector<int> NodeSet::ids() const {
  std::vector<int> out;
  for (int id = 0; id < kMaxNodes; ++id) if (contains(id)) out.push_back(id);
  return out;
}

NodeSet NodeSet::minus(const NodeSet& other) const {
  NodeSet out = *this;
  for (size_t i = 0; i < words_.size(); ++i) out.words_[i] &= ~other.words_[i];
  return out;
}

std::string NodeSet::to_string() const {
  std::string out;
  int id = 0;
  while (id < kMaxNodes) {
    if (!contains(id)) { ++id; continue; }
    int end = id;
    while (end + 1 < kMaxNodes && contains(end + 1)) ++end;
    if (!out.empty()) out += ',';
    out += std::to_string(id);
    if (end > id) out += '-' + std::to_string(end);
    id = end + 1;
  }
  return out;
}

}  // namespace ipc::numa
