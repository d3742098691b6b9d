// manager/detail/value_objects.h: the shared objects that hold values: List (a sequence), Value and Counter.
// Internal to the objects target.
//
// Threads, processes, lifetime and errors: as objects.h.
#pragma once

#include <string>

#include "manager/detail/object_base.h"

namespace ipc::manager::detail {

MadeObject make_list(std::string name);
MadeObject make_value(std::string name);
MadeObject make_counter(std::string name);

}  // namespace ipc::manager::detail
