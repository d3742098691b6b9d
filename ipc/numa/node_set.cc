#include "ipc/numa/node_set.h"

#include <charconv>

#include "ipc/numa/policy_error.h"

namespace ipc::numa {
namespace {

int parse_id(std::string_view whole, std::string_view part) {
  if (part.empty()) throw PolicyError(PolicyRule::kMalformedNodeList, "empty element in node list '" + std::string(whole) + "'");
  int value = 0;
  auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
  if (ec == std::errc::result_out_of_range || (ec == std::errc() && end == part.data() + part.size() &&
                                               value >= NodeSet::kMaxNodes)) {
    throw PolicyError(PolicyRule::kNodeBeyondKernelLimit,
                      "node id '" + std::string(part) + "' in '" + std::string(whole) +
                          "' is beyond the kernel's limit of " + std::to_string(NodeSet::kMaxNodes) + " nodes");
  }
  if (ec != std::errc() || end != part.data() + part.size() || value < 0) {
    throw PolicyError(PolicyRule::kMalformedNodeList,
                      "'" + std::string(part) + "' is not a node id in node list '" + std::string(whole) + "'");
  }
  return value;
}

}  // namespace

NodeSet::NodeSet(std::initializer_list<int> ids) {
  for (int id : ids) insert(id);
}

NodeSet NodeSet::parse(std::string_view text) {
  NodeSet set;
  if (text.empty()) return set;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view element = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    size_t dash = element.find('-');
    if (dash == std::string_view::npos) {
      set.insert(parse_id(text, element));
    } else {
      // A leading dash ("-1") leaves an empty low bound: reported as a malformed element.
      int lo = parse_id(text, element.substr(0, dash));
      int hi = parse_id(text, element.substr(dash + 1));
      if (lo > hi) {
        throw PolicyError(PolicyRule::kMalformedNodeList,
                          "range '" + std::string(element) + "' in '" + std::string(text) + "' runs backwards");
      }
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
                      "node id " + std::to_string(id) + " is outside 0.." + std::to_string(kMaxNodes - 1));
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
