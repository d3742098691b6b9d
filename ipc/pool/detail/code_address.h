// ipc/pool/detail/code_address.h (internal): code addresses that survive exec. A function's address differs
// between two runs of the same program (ASLR moves every object, PIE programs included), but its offset inside
// the object (the program or a shared library) that holds it does not. A portable address is (index of the
// object in the sender's list of loaded objects, offset from that object's load address); the receiver maps the
// index to the object of the same name in its own process.
//
// Threads: every function is thread-safe. Errors: InvalidArgument for an address in no loaded object (code made
// at run time) or an object the receiver has not loaded (a library dlopen()ed after the pool started).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ipc::detail {

// The objects loaded in this process (dl_iterate_phdr order; the program itself is ""), by name.
std::vector<std::string> loaded_objects();

// `address` as (index into `objects`, offset), packed as index << 48 | offset. 0 stays 0 (no callable).
// REQUIRES: objects == loaded_objects() of some earlier moment. Throws InvalidArgument (see above).
uint64_t portable_code_address(uintptr_t address, const std::vector<std::string>& objects);

// The receiver's side: the sender's object list, resolved once against this process's objects.
class CodeMap {
 public:
  explicit CodeMap(const std::vector<std::string>& sender_objects);
  // The address in this process of a portable address; 0 stays 0. Throws InvalidArgument.
  uintptr_t address(uint64_t portable) const;

 private:
  std::vector<std::string> names_;
  std::vector<intptr_t> bases_;  // load address per sender index; -1: not loaded here
};

}  // namespace ipc::detail
