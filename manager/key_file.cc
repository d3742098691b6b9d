#include "manager/key_file.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "ipc/base/error.h"

namespace ipc::manager {

namespace {

// Closes a descriptor on every path out.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(int fd, const std::string& text, const std::string& path) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = retry_on_eintr([&] { return ::write(fd, text.data() + done, text.size() - done); });
    if (n < 0) throw_errno("write " + path);
    done += static_cast<size_t>(n);
  }
}

}  // namespace

std::vector<std::uint8_t> load_key(const std::string& path) {
  Fd f{retry_on_eintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); })};
  if (f.fd < 0) {
    if (errno == ENOENT) throw NotFound("key file " + path + " does not exist");
    throw_errno("open key file " + path);
  }
  struct stat st;
  if (::fstat(f.fd, &st) != 0) throw_errno("fstat " + path);
  if (!S_ISREG(st.st_mode)) throw InvalidArgument("key file " + path + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    throw InvalidArgument("key file " + path + " is accessible by group or others; chmod 600 it");
  }
  std::vector<std::uint8_t> key;
  std::uint8_t buf[4096];
  for (;;) {
    ssize_t n = retry_on_eintr([&] { return ::read(f.fd, buf, sizeof buf); });
    if (n < 0) throw_errno("read " + path);
    if (n == 0) break;
    key.insert(key.end(), buf, buf + n);
  }
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  if (key.empty()) throw InvalidArgument("key file " + path + " holds no key (it is empty)");
  if (key.size() < kMinKeyBytes) {
    throw InvalidArgument("key file " + path + " holds a " + std::to_string(key.size()) + "-byte key; at least " +
                          std::to_string(kMinKeyBytes) + " bytes are needed");
  }
  return key;
}

std::vector<std::uint8_t> write_key_file(const std::string& path, bool overwrite) {
  struct stat st;
  if (!overwrite && ::lstat(path.c_str(), &st) == 0) {
    throw InvalidArgument("key file " + path + " exists; pass overwrite (numa_mp manager key --force) to replace it");
  }
  std::uint8_t raw[32];
  for (size_t got = 0; got < sizeof raw;) {
    ssize_t n = ::getrandom(raw + got, sizeof raw - got, 0);
    if (n < 0 && errno != EINTR) throw_errno("getrandom");
    if (n > 0) got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (std::uint8_t b : raw) {
    text += kHex[b >> 4];
    text += kHex[b & 15];
  }
  // Written beside the target under a name of our own, then renamed into place: the key is never visible half
  // written or with looser permissions, and O_EXCL below refuses a target created meanwhile.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    Fd f{retry_on_eintr([&] { return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); })};
    if (f.fd < 0) throw_errno("create key file " + tmp);
    try {
      if (::fchmod(f.fd, 0600) != 0) throw_errno("fchmod " + tmp);  // whatever the umask
      write_all(f.fd, text + "\n", tmp);
      if (::fsync(f.fd) != 0) throw_errno("fsync " + tmp);
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
  }
  // rename replaces an existing file; link refuses one (EEXIST) and leaves the temporary name to remove.
  const int rc = overwrite ? ::rename(tmp.c_str(), path.c_str()) : ::link(tmp.c_str(), path.c_str());
  const int err = errno;
  if (!overwrite || rc != 0) ::unlink(tmp.c_str());
  if (rc != 0) {
    if (err == EEXIST) throw InvalidArgument("key file " + path + " exists; pass overwrite to replace it");
    throw SystemError(err, (overwrite ? "rename " : "link ") + tmp + " to " + path);
  }
  return {text.begin(), text.end()};
}

}  // namespace ipc::manager
