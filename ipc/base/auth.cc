#include "ipc/base/auth.h"

#include <sys/random.h>

#include <string>

#include "ipc/base/error.h"

namespace ipc::detail {
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

// The server's nonce comes first in the client's proof and last in the server's: with the labels, no proof can
// stand for another.
Digest client_proof(std::string_view protocol, std::span<const std::uint8_t> key,
                    std::span<const std::uint8_t> server_nonce, std::span<const std::uint8_t> client_nonce) {
  const std::string label = std::string(protocol) + " client";
  return hmac_sha256(key, {bytes(label), server_nonce, client_nonce});
}

Digest server_proof(std::string_view protocol, std::span<const std::uint8_t> key,
                    std::span<const std::uint8_t> server_nonce, std::span<const std::uint8_t> client_nonce) {
  const std::string label = std::string(protocol) + " server";
  return hmac_sha256(key, {bytes(label), client_nonce, server_nonce});
}

}  // namespace ipc::detail
