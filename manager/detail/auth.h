// manager/detail/auth.h: the challenge-response proofs of manager.capnp (Authenticator). Internal.
//
// Both sides compute HMAC-SHA-256 under the shared key over a label and both nonces; the labels differ so that a
// proof in one direction can never be replayed as the other. Reentrant functions; the proofs are pure and never
// fail, random_bytes throws ipc::SystemError when getrandom(2) fails.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "manager/detail/sha256.h"

namespace ipc::manager::detail {

inline constexpr std::size_t kNonceBytes = 32;
inline constexpr std::size_t kMinKeyBytes = 16;
// The largest message a server accepts from a peer that has not authenticated yet. The handshake's messages
// (Bootstrap, the two calls with their nonces and proof, Finish) are a few hundred bytes; this leaves room for
// other Cap'n Proto implementations while keeping what an unauthenticated peer can make the server hold small.
inline constexpr std::size_t kHandshakeMessageBytes = 4096;

// `n` bytes from getrandom(2), for keys and nonces (kNonceBytes).
std::vector<std::uint8_t> random_bytes(std::size_t n);

Digest client_proof(std::span<const std::uint8_t> key, std::span<const std::uint8_t> server_nonce,
                    std::span<const std::uint8_t> client_nonce);
Digest server_proof(std::span<const std::uint8_t> key, std::span<const std::uint8_t> server_nonce,
                    std::span<const std::uint8_t> client_nonce);

}  // namespace ipc::manager::detail
