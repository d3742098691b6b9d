// ipc/sync/internal/named.h: creating and opening the library's shared objects by name in a Segment, with a type
// tag checked on open (Segment::find checks only the size). Internal: use T::create / T::open.
//
// Threads, Processes: as Segment (any thread, any process that opened the segment).
// Lifetime: the object lives as long as the segment, or until Segment::destroy<T>(name).
// Errors: create on a taken name throws InvalidArgument (from Segment::construct); open of a missing name, or of
//   an object of another type, throws InvalidArgument; SegmentFull and OS failures from Segment.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "ipc/base/error.h"
#include "ipc/segment/segment.h"

namespace ipc::sync_internal {

// The first member of every named object: a constant per type, so that opening a "Lock" that is really a
// "Semaphore" of the same size fails clearly instead of corrupting it.
struct TypeTag {
  uint32_t value;
};

template <typename T>
void check_tag(const T& object, std::string_view name) {
  if (object.tag_.value != T::kTypeTag) {
    throw InvalidArgument("object '" + std::string(name) + "' is not a " + std::string(T::kTypeName));
  }
}

template <typename T, typename... Args>
T& create_named(Segment& segment, std::string_view name, Args&&... args) {
  return segment.construct<T>(name, std::forward<Args>(args)...);
}

template <typename T>
T& open_named(Segment& segment, std::string_view name) {
  T* p = segment.find<T>(name);
  if (!p) {
    throw InvalidArgument("segment '" + segment.name() + "' has no " + std::string(T::kTypeName) + " named '" +
                          std::string(name) + "'");
  }
  check_tag(*p, name);
  return *p;
}

template <typename T, typename... Args>
T& open_or_create_named(Segment& segment, std::string_view name, Args&&... args) {
  T& object = segment.find_or_construct<T>(name, std::forward<Args>(args)...);
  check_tag(object, name);
  return object;
}

}  // namespace ipc::sync_internal
