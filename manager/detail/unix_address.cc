#include "manager/detail/unix_address.h"

#include <sys/socket.h>

#include <cstring>

#include "ipc/base/error.h"

namespace ipc::manager::detail {

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    throw InvalidArgument("socket path must be 1 to " + std::to_string(sizeof addr.sun_path - 1) + " bytes: '" +
                          path + "'");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace ipc::manager::detail
