// manager/detail/unix_address.h: the address of a Manager's Unix stream socket, for the server (bind, probe) and
// the client (connect). Internal.
//
// Threads: a reentrant function. Processes/Lifetime: n/a.
// Errors: a path that is empty or does not fit in sockaddr_un::sun_path throws ipc::InvalidArgument naming it.
#pragma once

#include <sys/un.h>

#include <string>

namespace ipc::manager::detail {

sockaddr_un unix_address(const std::string& path);

}  // namespace ipc::manager::detail
