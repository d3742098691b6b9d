#include "manager/detail/map_objects.h"

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace ipc::manager::detail {
namespace {

// The map and every call Dict and Namespace share; each serves these under the names of its interface.
class MapObject : public ObjectBase {
 protected:
  using ObjectBase::ObjectBase;

  kj::Promise<void> set(capnp::Text::Reader key, wire::Value::Reader value) {
    return translate_to_wire([&] {
      check_alive();
      Value v = from_wire(value);  // first: a bad value leaves the map unchanged
      // Looked up by view: replacing an existing key (the common case) allocates no key string.
      auto it = map_.find(std::string_view(key.begin(), key.size()));
      if (it != map_.end()) {
        it->second = std::move(v);
      } else {
        map_.emplace(str(key), std::move(v));
      }
      return kj::READY_NOW;
    });
  }

  template <typename Context>
  kj::Promise<void> get(capnp::Text::Reader key, Context& c) const {
    check_alive();
    auto it = map_.find(std::string_view(key.begin(), key.size()));
    if (it == map_.end()) return kj::READY_NOW;  // found = false: the default reply
    auto results = c.getResults(value_results(it->second));
    results.setFound(true);
    to_wire(it->second, results.initValue());
    return kj::READY_NOW;
  }

  // Whether the key was there.
  bool erase(capnp::Text::Reader key) {
    check_alive();
    auto it = map_.find(std::string_view(key.begin(), key.size()));
    if (it == map_.end()) return false;
    map_.erase(it);
    return true;
  }

  template <typename Context>
  kj::Promise<void> items(Context& c) const {
    check_alive();
    std::uint64_t words = 2;
    for (const auto& [k, v] : map_) words += 2 + (k.size() + 8) / 8 + wire_size_words(v);
    auto out = c.getResults(capnp::MessageSize{words, 0}).initEntries(static_cast<unsigned>(map_.size()));
    unsigned i = 0;
    for (const auto& [k, v] : map_) {
      out[i].setKey(text(k));
      to_wire(v, out[i].initValue());
      ++i;
    }
    return kj::READY_NOW;
  }

  Value::Map map_;
};

class DictImpl final : public wire::Dict::Server, public MapObject {
 public:
  explicit DictImpl(std::string name) : MapObject(std::move(name), Kind::kDict) {}

  kj::Promise<void> set(SetContext c) override {
    auto p = c.getParams();
    return MapObject::set(p.getKey(), p.getValue());
  }
  kj::Promise<void> get(GetContext c) override { return MapObject::get(c.getParams().getKey(), c); }
  kj::Promise<void> erase(EraseContext c) override {
    const bool erased = MapObject::erase(c.getParams().getKey());
    c.getResults(kScalarResults).setErased(erased);
    return kj::READY_NOW;
  }
  kj::Promise<void> items(ItemsContext c) override { return MapObject::items(c); }

  kj::Promise<void> size(SizeContext c) override {
    check_alive();
    c.getResults(kScalarResults).setSize(map_.size());
    return kj::READY_NOW;
  }
  kj::Promise<void> keys(KeysContext c) override {
    check_alive();
    std::uint64_t words = 2;
    for (const auto& entry : map_) words += 1 + (entry.first.size() + 8) / 8;
    auto out = c.getResults(capnp::MessageSize{words, 0}).initKeys(static_cast<unsigned>(map_.size()));
    unsigned i = 0;
    for (const auto& entry : map_) out.set(i++, text(entry.first));
    return kj::READY_NOW;
  }
  kj::Promise<void> update(UpdateContext c) override {
    return translate_to_wire([&] {
      check_alive();
      // Converted first so that a bad entry leaves the map unchanged.
      auto entries = c.getParams().getEntries();
      std::vector<std::pair<std::string, Value>> converted;
      converted.reserve(entries.size());
      for (auto e : entries) converted.emplace_back(str(e.getKey()), from_wire(e.getValue()));
      for (auto& [k, v] : converted) map_.insert_or_assign(std::move(k), std::move(v));
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> clear(ClearContext) override {
    check_alive();
    map_.clear();
    return kj::READY_NOW;
  }
};

class NamespaceImpl final : public wire::Namespace::Server, public MapObject {
 public:
  explicit NamespaceImpl(std::string name) : MapObject(std::move(name), Kind::kNamespace) {}

  kj::Promise<void> setAttr(SetAttrContext c) override {
    auto p = c.getParams();
    return MapObject::set(p.getName(), p.getValue());
  }
  kj::Promise<void> getAttr(GetAttrContext c) override { return MapObject::get(c.getParams().getName(), c); }
  kj::Promise<void> delAttr(DelAttrContext c) override {
    const bool deleted = MapObject::erase(c.getParams().getName());
    c.getResults(kScalarResults).setDeleted(deleted);
    return kj::READY_NOW;
  }
  kj::Promise<void> attrs(AttrsContext c) override { return MapObject::items(c); }
};

}  // namespace

MadeObject make_dict(std::string name) { return make_plain_object<DictImpl>(std::move(name)); }
MadeObject make_namespace(std::string name) { return make_plain_object<NamespaceImpl>(std::move(name)); }

}  // namespace ipc::manager::detail
