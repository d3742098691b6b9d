// manager/detail/map_objects.h: the map-like shared objects, Dict and Namespace (both text -> Value maps, served
// under different method names). Internal to the objects target.
//
// Threads, processes, lifetime and errors: as objects.h.
#pragma once

#include <string>

#include "manager/detail/object_base.h"

namespace ipc::manager::detail {

MadeObject make_dict(std::string name);
MadeObject make_namespace(std::string name);

}  // namespace ipc::manager::detail
