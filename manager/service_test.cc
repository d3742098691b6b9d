// A user-defined Cap'n Proto interface served next to the built-in objects.
#include <catch2/catch.hpp>

#include "manager/client.h"
#include "manager/detail/test_util.h"
#include "manager/server.h"
#include "manager/test_service.capnp.h"

using ipc::manager::Client;
using ipc::manager::testing::Calculator;
using ipc::manager::testing::run_child;

namespace {

class CalculatorImpl final : public Calculator::Server {
 protected:
  kj::Promise<void> add(AddContext context) override {
    ++calls_;
    auto p = context.getParams();
    context.getResults().setSum(p.getA() + p.getB());
    return kj::READY_NOW;
  }
  kj::Promise<void> calls(CallsContext context) override {
    context.getResults().setCount(calls_);
    return kj::READY_NOW;
  }

 private:
  std::uint64_t calls_ = 0;
};

ipc::manager::ServerProcess start_with_calculator() {
  ipc::manager::ServerProcessOptions options;
  options.setup = [](ipc::manager::Server& server) { server.serve("calculator", kj::heap<CalculatorImpl>()); };
  return ipc::manager::start_server(options);
}

}  // namespace

TEST_CASE("a user interface is served to clients in several processes", "[manager][service]") {
  auto server = start_with_calculator();
  auto child = run_child([&] {
    Client c(server.address(), server.key());
    auto calc = c.get_service<Calculator>("calculator");
    auto request = calc.addRequest();
    request.setA(40);
    request.setB(2);
    return c.wait(request.send()).getSum() == 42 ? 0 : 1;
  });
  CHECK(child.join() == 0);

  Client client(server.address(), server.key());
  auto calc = client.get_service<Calculator>("calculator");
  auto request = calc.addRequest();
  request.setA(-5);
  request.setB(3);
  CHECK(client.wait(request.send()).getSum() == -2);
  // One object in the server: it counted the child's call too.
  CHECK(client.wait(calc.callsRequest().send()).getCount() == 2);
}

TEST_CASE("asking for an unknown service or using the wrong interface is an error", "[manager][service]") {
  auto server = start_with_calculator();
  Client client(server.address(), server.key());
  CHECK_THROWS_AS(client.get_service<Calculator>("nope"), ipc::NotFound);
  auto wrong = client.get_service<ipc::manager::wire::Dict>("calculator");
  CHECK_THROWS_AS(client.wait(wrong.sizeRequest().send()), ipc::Unsupported);
}
