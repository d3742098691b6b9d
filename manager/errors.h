// manager/errors.h: the errors a Manager client can see, beyond ipc/base/error.h.
//
// Threads/Processes/Lifetime: plain exception types.
// Errors: how a failed RPC reaches C++ code:
//   - the connection is gone (server died, stopped, or closed the connection)     -> Disconnected
//   - the key was wrong, or the server could not prove it knows the key           -> AuthenticationFailed
//   - misuse reported by the server (wrong kind, bad index, bad name, oversized)  -> ipc::InvalidArgument
//   - no object (Open::kExisting) or service of that name                         -> ipc::NotFound
//   - wrong state reported by the server (removed object, lock released twice)    -> ipc::StateError
//   - the server does not implement a method (older server, wrong interface)      -> ipc::Unsupported
//   - anything else the server or a user service threw                            -> RemoteError
#pragma once

#include "ipc/base/error.h"

namespace ipc::manager {

class Disconnected : public Error {
 public:
  explicit Disconnected(const std::string& what) : Error(what) {}
};

// The one authentication failure of the library (ipc/base/error.h), under the Manager's name as well.
using AuthenticationFailed = ipc::AuthenticationFailed;

class RemoteError : public Error {
 public:
  explicit RemoteError(const std::string& what) : Error(what) {}
};

}  // namespace ipc::manager
