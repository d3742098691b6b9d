// ipc/segment/named.h: the segment's service for creating and opening typed objects by name, which the components
// above (sync, shared) build their T::create / T::open on. The segment records each object's kind (T::kKind) with
// its name and checks it, with the size, on every open. Users call T::create / T::open, not these.
//
// Threads, Processes: as Segment (any thread, any process that opened the segment).
// Lifetime: the object lives as long as the segment, or until Segment::destroy<T>(name).
// Errors: open of a missing name throws NotFound; create on a taken name and open of an object of another kind
//   ("object 'x' in segment 's' is a Queue, not a Lock") throw InvalidArgument; SegmentFull and OS failures from
//   Segment.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "ipc/base/error.h"
#include "ipc/segment/segment.h"

namespace ipc {

template <typename T, typename... Args>
T& create_named(Segment& segment, std::string_view name, Args&&... args) {
  return segment.construct<T>(name, std::forward<Args>(args)...);
}

template <typename T>
T& open_named(Segment& segment, std::string_view name) {
  T* p = segment.find<T>(name);
  if (!p) {
    throw NotFound("segment '" + segment.name() + "' has no " + std::string(T::kKind.name) + " named '" +
                   std::string(name) + "'");
  }
  return *p;
}

template <typename T, typename... Args>
T& open_or_create_named(Segment& segment, std::string_view name, Args&&... args) {
  return segment.find_or_construct<T>(name, std::forward<Args>(args)...);
}

}  // namespace ipc
