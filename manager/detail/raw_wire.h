// manager/detail/raw_wire.h (test-only): a Manager connection written by hand, byte by byte, for tests and the
// wire fuzz target that send what no Client would: raw bytes before authentication, or after an authentication
// done with hand-written Cap'n Proto RPC messages (not through a Client or an RpcSystem, which would answer, abort
// or close on their own).
//
// Threads: each call uses only the descriptor it is given. Processes: any. Lifetime: the caller closes the
//   descriptors these functions return.
// Errors: socket failures throw ipc::SystemError; a server that does not answer in time, or closes, throws
//   ipc::StateError; a refused proof throws ipc::AuthenticationFailed.
#pragma once

#include <capnp/any.h>
#include <capnp/message.h>
#include <kj/memory.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace ipc::manager::testing {

// A connected stream socket to a Manager's `address` (a Unix socket path or "tcp:HOST:PORT"), nothing sent.
int raw_connect(const std::string& address);

// Writes all of `bytes`, or stops quietly when the server closed the connection meanwhile.
void send_all(int fd, std::span<const std::uint8_t> bytes);

// Reads (and discards) what the server sends until it closes the connection or `timeout` passes; true if it closed.
bool closed_by_server(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(30));

// A framed Cap'n Proto message as the RPC layer would send it.
std::vector<std::uint8_t> frame(capnp::MessageBuilder& message);

// The RPC Bootstrap message (question 0) that asks for the server's Authenticator.
std::vector<std::uint8_t> bootstrap_message();

// Sends a call of `method` on the bootstrap capability (question 0) as question `question`.
void call_authenticator(int fd, std::uint32_t question, std::uint16_t method,
                        const std::function<void(capnp::AnyPointer::Builder)>& params);

// Reads messages until the Return for `question`. Throws StateError if none comes within `timeout`.
kj::Own<capnp::MessageReader> read_return(int fd, std::uint32_t question,
                                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

// A connection that authenticated with `key` through hand-written messages (bootstrap, challenge, respond), ready
// for any bytes an authenticated client could send.
int authenticated_raw_connection(const std::string& address, std::span<const std::uint8_t> key);

}  // namespace ipc::manager::testing
