// manager/key_file.h: the shared key of a Manager kept in a file, as `ipc-manager --key-file` and unrelated
// clients use it. (The challenge-response that proves knowledge of the key is separate: manager.capnp.)
//
//   ipc::manager::write_key_file("/home/me/.config/app/manager.key");       // once; or `numa_mp manager key FILE`
//   ipc::manager::Client client(address, ipc::manager::load_key("/home/me/.config/app/manager.key"));
//
// A key file holds the key as text: write_key_file writes 32 random bytes as 64 hex digits and a newline. Any
// content of at least 16 bytes is a key; trailing newlines ("\n", "\r\n") are not part of it, so a key written
// with `echo` works.
// Threads: any thread. Processes: any process of the file's owner.
// Lifetime: the file is the caller's; nothing is cached.
// Errors: a missing file throws ipc::NotFound; a file readable or writable by group or others (it must be 0600 or
//   stricter), an empty key, or one shorter than 16 bytes throws ipc::InvalidArgument naming the file and the
//   fix; an existing file on write_key_file without `overwrite` throws ipc::InvalidArgument; other OS failures
//   throw ipc::SystemError.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ipc::manager {

// The shortest key a Server accepts (ServerOptions::key).
inline constexpr std::size_t kMinKeyBytes = 16;

// The key in `path`, trailing newlines removed.
std::vector<std::uint8_t> load_key(const std::string& path);

// Writes a new random key to `path` with mode 0600 and returns it (as load_key will read it). Refuses an existing
// file unless `overwrite`; the new file replaces the old one atomically (rename), so a reader never sees half a key.
std::vector<std::uint8_t> write_key_file(const std::string& path, bool overwrite = false);

}  // namespace ipc::manager
