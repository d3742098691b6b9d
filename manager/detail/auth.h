// manager/detail/auth.h: the Manager's use of the challenge-response of ipc/base/auth.h (manager.capnp's
// Authenticator), under the protocol label "numa_mp manager v1". Internal.
//
// Threads: reentrant functions. Processes/Lifetime: n/a. Errors: see ipc/base/auth.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ipc/base/auth.h"

namespace ipc::manager::detail {

using ipc::detail::Digest;
using ipc::detail::equal_constant_time;
using ipc::detail::hmac_sha256;
using ipc::detail::kMinKeyBytes;
using ipc::detail::kNonceBytes;
using ipc::detail::random_bytes;

inline constexpr std::string_view kAuthProtocol = "numa_mp manager v1";

// The largest message a server accepts from a peer that has not authenticated yet. The handshake's messages
// (Bootstrap, the two calls with their nonces and proof, Finish) are a few hundred bytes; this leaves room for
// other Cap'n Proto implementations while keeping what an unauthenticated peer can make the server hold small.
inline constexpr std::size_t kHandshakeMessageBytes = 4096;

inline Digest client_proof(std::span<const std::uint8_t> key, std::span<const std::uint8_t> server_nonce,
                           std::span<const std::uint8_t> client_nonce) {
  return ipc::detail::client_proof(kAuthProtocol, key, server_nonce, client_nonce);
}
inline Digest server_proof(std::span<const std::uint8_t> key, std::span<const std::uint8_t> server_nonce,
                           std::span<const std::uint8_t> client_nonce) {
  return ipc::detail::server_proof(kAuthProtocol, key, server_nonce, client_nonce);
}

}  // namespace ipc::manager::detail
