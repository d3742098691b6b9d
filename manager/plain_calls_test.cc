// The server's direct path (SocketVatNetwork::offer_plain_export): calls on plain objects answered straight from
// the socket. Checked from the two kinds of client it must serve alike: a plain Cap'n Proto RPC client (no direct
// path of its own, as any other language's would be), and hand-written messages that look at every Return.
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <poll.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "ipc/base/error.h"
#include "manager/detail/auth.h"
#include "manager/detail/raw_wire.h"
#include "manager/manager.capnp.h"
#include "manager/client.h"
#include "manager/server.h"

using namespace ipc::manager;
namespace raw = ipc::manager::testing;

namespace {

// A Manager reached through Cap'n Proto's own RPC system only (TwoPartyClient), authenticated with `key`.
struct PlainRpcClient {
  PlainRpcClient(const std::string& address, const std::vector<std::uint8_t>& key)
      : io(kj::setupAsyncIo()),
        stream(io.lowLevelProvider->wrapSocketFd(raw::raw_connect(address), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
        rpc(*stream) {
    auto authenticator = rpc.bootstrap().castAs<wire::Authenticator>();
    auto challenge = authenticator.challengeRequest().send().wait(io.waitScope);
    auto nonce = challenge.getServerNonce();
    const std::vector<std::uint8_t> server_nonce(nonce.begin(), nonce.end());
    const std::vector<std::uint8_t> client_nonce(32, 3);
    const auto proof = detail::client_proof(key, server_nonce, client_nonce);
    auto respond = authenticator.respondRequest();
    respond.setProof(capnp::Data::Reader(proof.data(), proof.size()));
    respond.setClientNonce(capnp::Data::Reader(client_nonce.data(), client_nonce.size()));
    manager = respond.send().wait(io.waitScope).getManager();
  }
  capnp::Response<wire::Manager::OpenResults> open(const char* name, wire::Kind kind) {
    auto request = manager.openRequest();
    request.setName(name);
    request.setKind(kind);
    request.setCreate(true);
    return request.send().wait(io.waitScope);
  }

  kj::AsyncIoContext io;
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyClient rpc;
  wire::Manager::Client manager = nullptr;
};

// The Return of `message`, or throws: the server must send nothing else to a client that only calls.
capnp::rpc::Return::Reader return_of(capnp::MessageReader& message) {
  auto root = message.getRoot<capnp::rpc::Message>();
  if (!root.isReturn()) FAIL("the server sent a message that is not a Return: " << static_cast<int>(root.which()));
  return root.getReturn();
}

// The next message from `fd`, within a generous time.
kj::Own<capnp::MessageReader> next_message(int fd) {
  pollfd p{fd, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 30'000) == 1);
  return kj::heap<capnp::StreamFdMessageReader>(fd);
}

void send_message(int fd, capnp::MessageBuilder& message) { raw::send_all(fd, raw::frame(message)); }

void send_finish(int fd, std::uint32_t question) {
  capnp::MallocMessageBuilder message;
  auto finish = message.initRoot<capnp::rpc::Message>().initFinish();
  finish.setQuestionId(question);
  finish.setReleaseResultCaps(false);
  send_message(fd, message);
}

// Appends a Call of Counter.add(delta) on import `counter` as question `question` to `out`.
void append_add(std::vector<std::uint8_t>& out, std::uint32_t counter, std::uint32_t question, std::int64_t delta) {
  capnp::MallocMessageBuilder message;
  auto call = message.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(question);
  call.initTarget().setImportedCap(counter);
  call.setInterfaceId(capnp::typeId<wire::Counter>());
  call.setMethodId(0);
  call.initParams().getContent().initAs<wire::Counter::AddParams>().setDelta(delta);
  auto bytes = raw::frame(message);
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// A hand-written connection, authenticated, with a counter opened: the counter's import id.
std::uint32_t open_counter_by_hand(int fd, const std::vector<std::uint8_t>& key, const char* name) {
  raw::send_all(fd, raw::bootstrap_message());
  raw::call_authenticator(fd, 1, 0, [](capnp::AnyPointer::Builder p) { p.initAs<wire::Authenticator::ChallengeParams>(); });
  auto challenge = raw::read_return(fd, 1);
  auto nonce = challenge->getRoot<capnp::rpc::Message>().getReturn().getResults().getContent()
                   .getAs<wire::Authenticator::ChallengeResults>().getServerNonce();
  const std::vector<std::uint8_t> server_nonce(nonce.begin(), nonce.end());
  const std::vector<std::uint8_t> client_nonce(32, 5);
  const auto proof = detail::client_proof(key, server_nonce, client_nonce);
  raw::call_authenticator(fd, 2, 1, [&](capnp::AnyPointer::Builder p) {
    auto respond = p.initAs<wire::Authenticator::RespondParams>();
    respond.setProof(capnp::Data::Reader(proof.data(), proof.size()));
    respond.setClientNonce(capnp::Data::Reader(client_nonce.data(), client_nonce.size()));
  });
  auto response = raw::read_return(fd, 2);
  auto manager_caps = response->getRoot<capnp::rpc::Message>().getReturn().getResults().getCapTable();
  REQUIRE(manager_caps.size() == 1);
  const std::uint32_t manager = manager_caps[0].getSenderHosted();
  send_finish(fd, 1);
  send_finish(fd, 2);

  capnp::MallocMessageBuilder message;
  auto call = message.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(3);
  call.initTarget().setImportedCap(manager);
  call.setInterfaceId(capnp::typeId<wire::Manager>());
  call.setMethodId(0);
  auto open = call.initParams().getContent().initAs<wire::Manager::OpenParams>();
  open.setName(name);
  open.setKind(wire::Kind::COUNTER);
  open.setCreate(true);
  send_message(fd, message);
  auto opened = raw::read_return(fd, 3);
  auto caps = opened->getRoot<capnp::rpc::Message>().getReturn().getResults().getCapTable();
  REQUIRE(caps.size() == 1);
  send_finish(fd, 3);
  return caps[0].getSenderHosted();
}

}  // namespace

TEST_CASE("a plain Cap'n Proto RPC client gets every answer right and in order from the server's direct path",
          "[manager][direct]") {
  auto server = start_server();
  PlainRpcClient client(server.address(), server.key());
  auto counter_open = client.open("c", wire::Kind::COUNTER);
  auto counter = counter_open.getObject().getCounter();
  auto dict_open = client.open("d", wire::Kind::DICT);
  auto dict = dict_open.getObject().getDict();

  // 500 adds in flight at once: each sees the one before it.
  std::vector<kj::Promise<capnp::Response<wire::Counter::AddResults>>> adds;
  for (int i = 0; i < 500; ++i) {
    auto add = counter.addRequest();
    add.setDelta(1);
    adds.push_back(add.send());
  }
  for (int i = 0; i < 500; ++i) REQUIRE(adds[i].wait(client.io.waitScope).getValue() == i + 1);

  auto set = dict.setRequest();
  set.setKey("k");
  set.initValue().setText("v");
  set.send().wait(client.io.waitScope);
  auto get = dict.getRequest();
  get.setKey("k");
  auto reply = get.send().wait(client.io.waitScope);
  CHECK(reply.getFound());
  CHECK(reply.getValue().getText() == "v");

  // An error is the object's own, as the RPC system would send it.
  auto overflow = counter.setRequest();
  overflow.setValue(INT64_MAX);
  overflow.send().wait(client.io.waitScope);
  auto add = counter.addRequest();
  add.setDelta(1);
  auto failed = add.send();
  CHECK_THROWS_WITH(failed.wait(client.io.waitScope), Catch::Contains("[InvalidArgument]") &&
                                                          Catch::Contains("counter overflow"));
  // A method the interface lacks: unimplemented, from the object's dispatch.
  auto wrong = counter.castAs<wire::Dict>().sizeRequest();
  CHECK_THROWS_WITH(wrong.send().wait(client.io.waitScope), Catch::Contains("not implemented", Catch::CaseSensitive::No));
  auto after = counter.getRequest().send().wait(client.io.waitScope);
  CHECK(after.getValue() == INT64_MAX);
}

TEST_CASE("an export id a plain client released and the server gave to another object reaches the new object",
          "[manager][direct]") {
  auto server = start_server();
  PlainRpcClient client(server.address(), server.key());
  auto set = [&](wire::Dict::Client dict, std::int64_t value) {
    auto request = dict.setRequest();
    request.setKey("k");
    request.initValue().setInt(value);
    request.send().wait(client.io.waitScope);
  };
  auto get = [&](wire::Dict::Client dict) {
    auto request = dict.getRequest();
    request.setKey("k");
    return request.send().wait(client.io.waitScope).getValue().getInt();
  };
  for (int round = 0; round < 3; ++round) {
    const std::string a = "a" + std::to_string(round);
    const std::string b = "b" + std::to_string(round);
    {
      auto opened = client.open(a.c_str(), wire::Kind::DICT);
      set(opened.getObject().getDict(), 1);
    }  // the dict's capability goes: Release; its export id is free for the next capability the server sends
    client.manager.listRequest().send().wait(client.io.waitScope);
    {
      auto opened = client.open(b.c_str(), wire::Kind::DICT);  // under the id `a` had
      set(opened.getObject().getDict(), 2);
      REQUIRE(get(opened.getObject().getDict()) == 2);
    }
    client.manager.listRequest().send().wait(client.io.waitScope);
    {
      auto opened = client.open(a.c_str(), wire::Kind::DICT);
      REQUIRE(get(opened.getObject().getDict()) == 1);
    }
    client.manager.listRequest().send().wait(client.io.waitScope);
    auto opened = client.open("q", wire::Kind::QUEUE);
    auto queue = opened.getObject().getQueue();
    auto put = queue.putRequest();
    put.initValue().setInt(round);
    put.setTimeoutNs(-1);
    REQUIRE(put.send().wait(client.io.waitScope).getOk());
    auto size = queue.sizeRequest().send().wait(client.io.waitScope);
    REQUIRE(size.getSize() == 1);
    auto get = queue.getRequest();
    get.setTimeoutNs(0);
    auto item = get.send().wait(client.io.waitScope);
    REQUIRE(item.getOk());
    REQUIRE(item.getValue().getInt() == round);
  }
}

TEST_CASE("a reply over the connection's size limit fails its call alone", "[manager][direct]") {
  ServerProcessOptions options;
  options.max_message_bytes = 64 * 1024;
  auto server = start_server(options);
  Client client(server.address(), server.key());
  auto l = client.list("l");
  const std::string part(30 * 1024, 'x');
  for (int i = 0; i < 3; ++i) l.append(part);  // each call fits; the three together do not
  CHECK_THROWS_WITH(l.items(), Catch::Contains("larger than our single-message size limit"));
  CHECK(l.size() == 3);
  CHECK(l.get(2) == Value(part));
}

TEST_CASE("the server answers every direct call once, by its question id, in order, and frees the id at its Finish",
          "[manager][direct]") {
  auto server = start_server();
  const int fd = raw::raw_connect(server.address());
  const std::uint32_t counter = open_counter_by_hand(fd, server.key(), "c");

  std::int64_t expected = 0;
  for (int round = 0; round < 3; ++round) {
    // 300 calls in one write, question ids reused from round to round once their Finish went out.
    std::vector<std::uint8_t> burst;
    for (std::uint32_t q = 0; q < 300; ++q) append_add(burst, counter, 100 + q, q + 1);
    raw::send_all(fd, burst);
    for (std::uint32_t q = 0; q < 300; ++q) {
      auto message = next_message(fd);
      auto ret = return_of(*message);
      REQUIRE(ret.getAnswerId() == 100 + q);  // one Return per call, none for a call never made, in call order
      REQUIRE(ret.isResults());
      expected += q + 1;
      REQUIRE(ret.getResults().getContent().getAs<wire::Counter::AddResults>().getValue() == expected);
    }
    for (std::uint32_t q = 0; q < 300; ++q) send_finish(fd, 100 + q);
  }

  // A call pipelined on a direct call's results fails alone (they hold no capability).
  std::vector<std::uint8_t> calls;
  append_add(calls, counter, 500, 1);
  {
    capnp::MallocMessageBuilder message;
    auto call = message.initRoot<capnp::rpc::Message>().initCall();
    call.setQuestionId(501);
    call.initTarget().initPromisedAnswer().setQuestionId(500);
    call.setInterfaceId(capnp::typeId<wire::Counter>());
    call.setMethodId(1);
    call.initParams().getContent().initAs<wire::Counter::GetParams>();
    auto bytes = raw::frame(message);
    calls.insert(calls.end(), bytes.begin(), bytes.end());
  }
  raw::send_all(fd, calls);
  auto first = next_message(fd);
  REQUIRE(return_of(*first).getAnswerId() == 500);
  auto second = next_message(fd);
  REQUIRE(return_of(*second).getAnswerId() == 501);
  REQUIRE(return_of(*second).isException());

  // A call reusing a question id whose Finish has not come is a protocol error: the connection ends.
  std::vector<std::uint8_t> reuse;
  append_add(reuse, counter, 500, 1);
  raw::send_all(fd, reuse);
  CHECK(raw::closed_by_server(fd));
  ::close(fd);
}
