// ipc/base/sha256.h: SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), for the challenge-response of the Manager and the Listener.
// Internal: not part of the public API. Written here because the project's dependencies (Debian packages in
// bazelw) include no crypto library; the code is small and checked against the FIPS and RFC 4231 test vectors.
//
// Threads: Sha256 is a plain value, one per thread; the free functions are reentrant.
// Processes: never in shared memory.
// Lifetime: ordinary values.
// Errors: none thrown.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace ipc::detail {

using Digest = std::array<std::uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void update(std::span<const std::uint8_t> data);
  void update(std::string_view text) {
    update({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
  }
  // Ends the hash; the object must not be updated afterwards.
  Digest finish();

 private:
  void compress(const std::uint8_t* block);

  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
};

Digest sha256(std::span<const std::uint8_t> data);

// HMAC-SHA-256 of the concatenation of `parts` under `key`.
Digest hmac_sha256(std::span<const std::uint8_t> key, std::initializer_list<std::span<const std::uint8_t>> parts);

// Compares in time independent of where the first difference is (a proof check must not leak a prefix).
bool equal_constant_time(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

}  // namespace ipc::detail
