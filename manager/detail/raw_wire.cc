#include "manager/detail/raw_wire.h"

#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc/base/error.h"
#include "ipc/base/unix_socket.h"
#include "manager/detail/address.h"
#include "manager/detail/auth.h"
#include "manager/manager.capnp.h"

namespace ipc::manager::testing {

int raw_connect(const std::string& address) {
  const auto target = detail::resolve(detail::parse_address(address), false).front();
  const int fd = ::socket(target.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket");
  if (retry_on_eintr([&] { return ::connect(fd, target.address(), target.size); }) != 0) {
    const int err = errno;
    ::close(fd);
    throw SystemError(err, "connect " + address);
  }
  return fd;
}

void send_all(int fd, std::span<const std::uint8_t> bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server may close while we still write: fine
    sent += static_cast<std::size_t>(n);
  }
}

bool closed_by_server(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) != 1) continue;
    if (::recv(fd, buf, sizeof buf, 0) <= 0) return true;
  }
  return false;
}

std::vector<std::uint8_t> frame(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::vector<std::uint8_t>(bytes.begin(), bytes.end());
}

std::vector<std::uint8_t> bootstrap_message() {
  capnp::MallocMessageBuilder message;
  auto boot = message.initRoot<capnp::rpc::Message>().initBootstrap();
  boot.setQuestionId(0);
  return frame(message);
}

void call_authenticator(int fd, std::uint32_t question, std::uint16_t method,
                        const std::function<void(capnp::AnyPointer::Builder)>& params) {
  capnp::MallocMessageBuilder message;
  auto call = message.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(question);
  call.initTarget().initPromisedAnswer().setQuestionId(0);
  call.setInterfaceId(capnp::typeId<wire::Authenticator>());
  call.setMethodId(method);
  params(call.initParams().initContent());
  send_all(fd, frame(message));
}

kj::Own<capnp::MessageReader> read_return(int fd, std::uint32_t question, std::chrono::milliseconds timeout) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (retry_on_eintr([&] { return ::poll(&p, 1, static_cast<int>(timeout.count())); }) != 1) {
      throw StateError("no answer to question " + std::to_string(question) + " within " +
                       std::to_string(timeout.count()) + " ms");
    }
    auto reader = kj::heap<capnp::StreamFdMessageReader>(fd);
    auto message = reader->getRoot<capnp::rpc::Message>();
    if (message.isReturn() && message.getReturn().getAnswerId() == question) return reader;
  }
}

int authenticated_raw_connection(const std::string& address, std::span<const std::uint8_t> key) {
  const int fd = raw_connect(address);
  try {
    send_all(fd, bootstrap_message());
    call_authenticator(fd, 1, 0, [](capnp::AnyPointer::Builder p) { p.initAs<wire::Authenticator::ChallengeParams>(); });
    auto challenge = read_return(fd, 1);
    auto results = challenge->getRoot<capnp::rpc::Message>().getReturn();
    if (!results.isResults()) throw StateError("the server did not answer the challenge request with a challenge");
    auto nonce = results.getResults().getContent().getAs<wire::Authenticator::ChallengeResults>().getServerNonce();
    const std::vector<std::uint8_t> server_nonce(nonce.begin(), nonce.end());
    const std::vector<std::uint8_t> client_nonce(32, 7);
    const auto proof = detail::client_proof(key, server_nonce, client_nonce);
    call_authenticator(fd, 2, 1, [&](capnp::AnyPointer::Builder p) {
      auto respond = p.initAs<wire::Authenticator::RespondParams>();
      respond.setProof(capnp::Data::Reader(proof.data(), proof.size()));
      respond.setClientNonce(capnp::Data::Reader(client_nonce.data(), client_nonce.size()));
    });
    auto response = read_return(fd, 2);
    if (!response->getRoot<capnp::rpc::Message>().getReturn().isResults()) {
      throw AuthenticationFailed("the server refused a proof made with the right key");
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  return fd;
}

}  // namespace ipc::manager::testing
