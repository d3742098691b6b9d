// manager/detail/objects.h: the registry that names the server-side shared objects. Internal. The objects are
// in map_objects (dict, namespace), value_objects (list, value, counter) and waiting_objects (queue, lock, event).
//
// Threads: everything here runs on the server's one event-loop thread; no locking is needed or done.
// Processes: server process only.
// Lifetime: the Registry lives inside Server::run(); objects are reference counted by the capabilities that point
//   at them (the registry's own reference plus every client's), so a removed object lives on, failing every call,
//   until the last client lets go. A queue item on its way to a consumer keeps its queue alive until the network
//   carrying it says whether it arrived (it then goes back to the queue, or is counted as abandoned).
// Errors: calls fail with tagged kj exceptions (wire_errors.h).
#pragma once

#include <capnp/capability.h>
#include <kj/timer.h>

#include <map>
#include <string>
#include <vector>

#include "manager/manager.capnp.h"
#include "manager/value.h"

namespace ipc::manager::detail {

class ObjectBase;
struct NetworkRef;

class Registry {
 public:
  explicit Registry(kj::Timer& timer) : timer_(timer) {}
  ~Registry();

  // An object whose calls are all plain (object_base.h, make_plain_object): its capability and its server.
  struct Plain {
    capnp::Capability::Client cap;
    capnp::Capability::Server& server;
    std::uint64_t interface_id;  // the one interface it serves
    std::uint16_t method_count;  // methods 0 .. method_count - 1
  };
  // Fills `out` with the capability of `name`, creating it when allowed. See Manager.open in manager.capnp.
  // `link` is the connection that asked: a queue's capability is its own per connection, so that the items its
  // gets hand out can be followed to that client (see waiting_objects.h and SocketVatNetwork). Returns the object
  // when its calls are plain, for the server's direct path.
  kj::Maybe<Plain> open(kj::StringPtr name, Kind kind, bool create, std::uint64_t max_size, wire::Object::Builder out,
                        NetworkRef& link);
  bool remove(kj::StringPtr name);
  std::vector<ObjectRef> list() const;

  void serve(std::string name, capnp::Capability::Client service);
  capnp::Capability::Client service(kj::StringPtr name);

 private:
  struct Entry {
    Kind kind;
    capnp::Capability::Client cap;
    ObjectBase* object;                  // owned through `cap`
    capnp::Capability::Server* plain;    // the same object, when its calls are plain; else null
    std::uint64_t plain_interface;
    std::uint16_t plain_methods;
  };
  kj::Timer& timer_;
  std::map<std::string, Entry, std::less<>> objects_;
  std::map<std::string, capnp::Capability::Client, std::less<>> services_;
};

// Object names: 1..255 bytes, no NUL. Throws ipc::InvalidArgument otherwise.
void validate_name(std::string_view name);

}  // namespace ipc::manager::detail
