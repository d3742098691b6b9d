// manager/detail/wire_errors.h: how the error classes of errors.h cross the wire. Internal.
//
// A Cap'n Proto exception carries only a type (FAILED, DISCONNECTED, ...) and a description, so the server puts a
// tag naming the class at the start of the description and the client maps it back.
//
// Threads: reentrant functions. Processes/Lifetime: n/a.
// Errors: `fail` throws kj::Exception; `rethrow_as_ipc_error` throws the mapped ipc::Error subclass.
#pragma once

#include <kj/exception.h>

#include <string>
#include <string_view>

namespace ipc::manager::detail {

enum class Tag { kInvalidArgument, kStateError, kUnsupported, kAuthenticationFailed, kNotFound };

// Server side: throws a FAILED kj::Exception whose description is "[Tag] message".
[[noreturn]] void fail(Tag tag, std::string_view message);

// Server side: runs `f`, turning the ipc::Error subclasses it throws into tagged kj exceptions (so that conversion
// helpers shared with the client can throw the usual C++ types).
template <typename F>
auto translate_to_wire(F&& f) -> decltype(f());
[[noreturn]] void rethrow_current_as_wire();

// Client side: throws the ipc::Error subclass that `e` stands for; `context` names the connection.
[[noreturn]] void rethrow_as_ipc_error(const kj::Exception& e, std::string_view context);

template <typename F>
auto translate_to_wire(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const kj::Exception&) {
    throw;
  } catch (...) {
    rethrow_current_as_wire();
  }
}

}  // namespace ipc::manager::detail
