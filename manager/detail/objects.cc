#include "manager/detail/objects.h"

#include "ipc/base/error.h"
#include "manager/detail/map_objects.h"
#include "manager/detail/value_objects.h"
#include "manager/detail/waiting_objects.h"
#include "manager/detail/wire_errors.h"

namespace ipc::manager::detail {

void validate_name(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.find('\0') != std::string_view::npos) {
    throw InvalidArgument("object names are 1 to 255 bytes without NUL (got " + std::to_string(name.size()) +
                          " bytes)");
  }
}

Registry::~Registry() = default;

kj::Maybe<Registry::Plain> Registry::open(kj::StringPtr name_text, Kind kind, bool create, std::uint64_t max_size,
                    wire::Object::Builder out, NetworkRef& link) {
  std::string_view name(name_text.begin(), name_text.size());
  translate_to_wire([&] { validate_name(name); });
  auto it = objects_.find(name);
  if (it != objects_.end()) {
    if (it->second.kind != kind) {
      fail(Tag::kInvalidArgument, "object '" + std::string(name) + "' is a " + kind_name(it->second.kind) +
                                      ", not a " + kind_name(kind));
    }
  } else {
    if (!create) fail(Tag::kNotFound, "no object named '" + std::string(name) + "'");
    std::string n(name);
    MadeObject made = [&] {
      switch (kind) {
        case Kind::kDict: return make_dict(n);
        case Kind::kList: return make_list(n);
        case Kind::kNamespace: return make_namespace(n);
        case Kind::kQueue: return make_queue(n, timer_, max_size);
        case Kind::kLock: return make_lock(n, timer_);
        case Kind::kEvent: return make_event(n, timer_);
        case Kind::kValue: return make_value(n);
        case Kind::kCounter: return make_counter(n);
      }
      fail(Tag::kInvalidArgument, "unknown object kind");
    }();
    it = objects_.emplace(n, Entry{kind, kj::mv(made.cap), made.object, made.plain, made.plain_interface, made.plain_methods}).first;
  }
  auto& cap = it->second.cap;
  switch (kind) {
    case Kind::kDict: out.setDict(cap.castAs<wire::Dict>()); break;
    case Kind::kList: out.setList(cap.castAs<wire::SharedList>()); break;
    case Kind::kNamespace: out.setNamespace(cap.castAs<wire::Namespace>()); break;
    case Kind::kQueue:
      out.setQueue(queue_endpoint(*it->second.object, cap.castAs<wire::Queue>(), link));
      break;
    case Kind::kLock: out.setLock(cap.castAs<wire::Lock>()); break;
    case Kind::kEvent: out.setEvent(cap.castAs<wire::Event>()); break;
    case Kind::kValue: out.setValue(cap.castAs<wire::SharedValue>()); break;
    case Kind::kCounter: out.setCounter(cap.castAs<wire::Counter>()); break;
  }
  if (it->second.plain == nullptr) return nullptr;
  return Plain{cap, *it->second.plain, it->second.plain_interface, it->second.plain_methods};
}

bool Registry::remove(kj::StringPtr name) {
  auto it = objects_.find(std::string_view(name.begin(), name.size()));
  if (it == objects_.end()) return false;
  it->second.object->mark_removed();
  objects_.erase(it);
  return true;
}

std::vector<ObjectRef> Registry::list() const {
  std::vector<ObjectRef> out;
  out.reserve(objects_.size());
  for (const auto& [name, entry] : objects_) out.push_back(ObjectRef{name, entry.kind});
  return out;
}

void Registry::serve(std::string name, capnp::Capability::Client service) {
  services_.insert_or_assign(std::move(name), kj::mv(service));
}

capnp::Capability::Client Registry::service(kj::StringPtr name) {
  auto it = services_.find(std::string_view(name.begin(), name.size()));
  if (it == services_.end()) fail(Tag::kNotFound, "no service named '" + std::string(name.cStr()) + "'");
  return it->second;
}

}  // namespace ipc::manager::detail
