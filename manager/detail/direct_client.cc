#include "manager/detail/direct_client.h"

#include <kj/async.h>

namespace ipc::manager::detail {
namespace {

// The pipeline of a call whose results hold no capabilities: a call pipelined on them fails, as it would on
// LocalClient's pipeline when the field named is not a capability.
class NoCapabilityPipeline final : public capnp::PipelineHook, public kj::Refcounted {
 public:
  kj::Own<capnp::PipelineHook> addRef() override { return kj::addRef(*this); }
  kj::Own<capnp::ClientHook> getPipelinedCap(kj::ArrayPtr<const capnp::PipelineOp>) override {
    return capnp::newBrokenCap("the results of this call hold no capabilities to pipeline on");
  }
};

class DirectClient final : public capnp::ClientHook, public kj::Refcounted {
 public:
  explicit DirectClient(kj::Own<capnp::Capability::Server> server)
      : server_(*server),
        local_(capnp::ClientHook::from(capnp::Capability::Client(kj::mv(server)))),
        pipeline_(kj::refcounted<NoCapabilityPipeline>()) {}

  capnp::Request<capnp::AnyPointer, capnp::AnyPointer> newCall(uint64_t interface_id, uint16_t method_id,
                                                              kj::Maybe<capnp::MessageSize> size_hint) override {
    return local_->newCall(interface_id, method_id, size_hint);
  }

  VoidPromiseAndPipeline call(uint64_t interface_id, uint16_t method_id,
                              kj::Own<capnp::CallContextHook>&& context) override {
    capnp::CallContextHook& hook = *context;
    // evalNow: an exception thrown by the method (or by dispatch, for a method this interface lacks) fails the
    // returned promise, as LocalClient's deferred call does, instead of unwinding through the RPC system.
    auto done = kj::evalNow([&] {
      return server_.dispatchCall(interface_id, method_id, capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer>(hook))
          .promise;
    });
    // The context (params and results) lives until the call completes.
    return {done.attach(kj::mv(context)), kj::addRef(*pipeline_)};
  }

  kj::Maybe<capnp::ClientHook&> getResolved() override { return nullptr; }
  kj::Maybe<kj::Promise<kj::Own<capnp::ClientHook>>> whenMoreResolved() override { return nullptr; }
  kj::Own<capnp::ClientHook> addRef() override { return kj::addRef(*this); }
  const void* getBrand() override { return &kBrand; }
  kj::Maybe<int> getFd() override { return nullptr; }

 private:
  static const int kBrand;
  capnp::Capability::Server& server_;  // owned by local_
  kj::Own<capnp::ClientHook> local_;
  kj::Own<NoCapabilityPipeline> pipeline_;
};

const int DirectClient::kBrand = 0;

}  // namespace

capnp::Capability::Client direct_client(kj::Own<capnp::Capability::Server> server) {
  return capnp::Capability::Client(kj::Own<capnp::ClientHook>(kj::refcounted<DirectClient>(kj::mv(server))));
}

}  // namespace ipc::manager::detail
