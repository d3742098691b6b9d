#include "ipc/pool/detail/code_address.h"

#include <link.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include "ipc/base/error.h"

namespace ipc::detail {
namespace {

constexpr int kOffsetBits = 48;
constexpr uint64_t kOffsetMask = (uint64_t{1} << kOffsetBits) - 1;

struct Loaded {
  std::string name;
  uintptr_t base;
};

std::vector<Loaded> loaded() {
  std::vector<Loaded> out;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        static_cast<std::vector<Loaded>*>(data)->push_back({info->dlpi_name ? info->dlpi_name : "", info->dlpi_addr});
        return 0;
      },
      &out);
  return out;
}

// The object holding `address` (the one whose loaded segments contain it), or nullopt.
std::optional<Loaded> object_of(uintptr_t address) {
  struct Search {
    uintptr_t address;
    std::optional<Loaded> found;
  } search{address, std::nullopt};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto& s = *static_cast<Search*>(data);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          const uintptr_t start = info->dlpi_addr + ph.p_vaddr;
          if (ph.p_type == PT_LOAD && s.address >= start && s.address < start + ph.p_memsz) {
            s.found = Loaded{info->dlpi_name ? info->dlpi_name : "", info->dlpi_addr};
            return 1;
          }
        }
        return 0;
      },
      &search);
  return search.found;
}

// Addresses already looked up: a task function is sent again and again, and dl_iterate_phdr takes a lock.
std::mutex g_cache_mu;
std::unordered_map<uintptr_t, Loaded>& cache() {
  static auto* c = new std::unordered_map<uintptr_t, Loaded>();  // leaked: used by pools destroyed at exit
  return *c;
}

}  // namespace

std::vector<std::string> loaded_objects() {
  std::vector<std::string> names;
  for (auto& o : loaded()) names.push_back(std::move(o.name));
  return names;
}

uint64_t portable_code_address(uintptr_t address, const std::vector<std::string>& objects) {
  if (address == 0) return 0;
  Loaded object;
  {
    std::lock_guard lock(g_cache_mu);
    auto it = cache().find(address);
    if (it == cache().end()) {
      auto found = object_of(address);
      if (!found) {
        throw InvalidArgument("Pool: a task's code at " + std::to_string(address) +
                              " is in no loaded program or library (made at run time?); it cannot be sent to a "
                              "worker started by exec or the fork server");
      }
      it = cache().emplace(address, std::move(*found)).first;
    }
    object = it->second;
  }
  const auto at = std::find(objects.begin(), objects.end(), object.name);
  if (at == objects.end()) {
    throw InvalidArgument("Pool: a task's code is in " + object.name +
                          ", loaded after the pool started; its workers cannot reach it");
  }
  return static_cast<uint64_t>(at - objects.begin()) << kOffsetBits | ((address - object.base) & kOffsetMask);
}

CodeMap::CodeMap(const std::vector<std::string>& sender_objects) : names_(sender_objects) {
  const auto mine = loaded();
  for (const auto& name : sender_objects) {
    auto it = std::find_if(mine.begin(), mine.end(), [&](const Loaded& o) { return o.name == name; });
    bases_.push_back(it == mine.end() ? -1 : static_cast<intptr_t>(it->base));
  }
}

uintptr_t CodeMap::address(uint64_t portable) const {
  if (portable == 0) return 0;
  const uint64_t index = portable >> kOffsetBits;
  if (index >= bases_.size() || bases_[index] < 0) {
    throw InvalidArgument("pool worker: the task's code is in " +
                          (index < names_.size() ? "\"" + names_[index] + "\"" : "object " + std::to_string(index)) +
                          ", which this worker has not loaded");
  }
  return static_cast<uintptr_t>(bases_[index]) + (portable & kOffsetMask);
}

}  // namespace ipc::detail
