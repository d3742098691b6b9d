#include "manager/detail/auth.h"

#include <string_view>

namespace ipc::manager::detail {
namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

Digest client_proof(std::span<const std::uint8_t> key, std::span<const std::uint8_t> server_nonce,
                    std::span<const std::uint8_t> client_nonce) {
  return hmac_sha256(key, {bytes("numa_mp manager v1 client"), server_nonce, client_nonce});
}

Digest server_proof(std::span<const std::uint8_t> key, std::span<const std::uint8_t> server_nonce,
                    std::span<const std::uint8_t> client_nonce) {
  return hmac_sha256(key, {bytes("numa_mp manager v1 server"), client_nonce, server_nonce});
}

}  // namespace ipc::manager::detail
