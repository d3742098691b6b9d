// ipc/base/auth.h: the challenge-response proofs with which two processes show each other they hold the same key,
// shared by the Manager (manager/) and the Listener (ipc/pipe). Internal (ipc::detail; not for users).
//
//   server: nonce_s = random_bytes(kNonceBytes), sent to the client
//   client: nonce_c = random_bytes(kNonceBytes); sends nonce_c and client_proof(protocol, key, nonce_s, nonce_c)
//   server: checks it with equal_constant_time, answers server_proof(protocol, key, nonce_s, nonce_c)
//
// Both proofs are HMAC-SHA-256 under the key over a label and both nonces. The labels differ by direction, so a
// proof in one direction can never be replayed as the other, and by protocol ("numa_mp manager v1", "numa_mp
// listener v1"), so a proof made for one service is worthless to the other. The key never crosses the socket.
// Threads: reentrant functions. Processes/Lifetime: n/a.
// Errors: the proofs are pure and never fail; random_bytes throws ipc::SystemError when getrandom(2) fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "ipc/base/sha256.h"

namespace ipc::detail {

inline constexpr std::size_t kNonceBytes = 32;
inline constexpr std::size_t kMinKeyBytes = 16;

// `n` bytes from getrandom(2), for keys and nonces (kNonceBytes).
std::vector<std::uint8_t> random_bytes(std::size_t n);

Digest client_proof(std::string_view protocol, std::span<const std::uint8_t> key,
                    std::span<const std::uint8_t> server_nonce, std::span<const std::uint8_t> client_nonce);
Digest server_proof(std::string_view protocol, std::span<const std::uint8_t> key,
                    std::span<const std::uint8_t> server_nonce, std::span<const std::uint8_t> client_nonce);

}  // namespace ipc::detail
