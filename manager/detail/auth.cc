#include "manager/detail/auth.h"

#include <sys/random.h>

#include <string_view>

#include "ipc/base/error.h"

namespace ipc::manager::detail {
namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

std::vector<std::uint8_t> random_bytes(std::size_t n) {
  std::vector<std::uint8_t> out(n);
  std::size_t done = 0;
  while (done < n) {
    ssize_t r = retry_on_eintr([&] { return ::getrandom(out.data() + done, n - done, 0); });
    if (r < 0) throw_errno("getrandom");
    done += static_cast<std::size_t>(r);
  }
  return out;
}

Digest client_proof(std::span<const std::uint8_t> key, std::span<const std::uint8_t> server_nonce,
                    std::span<const std::uint8_t> client_nonce) {
  return hmac_sha256(key, {bytes("numa_mp manager v1 client"), server_nonce, client_nonce});
}

Digest server_proof(std::span<const std::uint8_t> key, std::span<const std::uint8_t> server_nonce,
                    std::span<const std::uint8_t> client_nonce) {
  return hmac_sha256(key, {bytes("numa_mp manager v1 server"), client_nonce, server_nonce});
}

}  // namespace ipc::manager::detail
