// manager/detail/direct_client.h: a capability that runs the calls it receives over RPC on its server object at
// once, instead of through Cap'n Proto's LocalClient. Internal to the objects target.
//
// Why: Cap'n Proto 0.9's LocalClient defers every call by one event-loop turn (evalLater), forks the call's
// promise for a pipeline, joins it with a tail-call promise and queues the pipeline: about a dozen allocations
// and several promise nodes per call, a third of the server's work for a small dict call. The Manager's objects
// need none of it: they never tail-call, never stream, never shorten their path, and the objects served this way
// return no capabilities, so there is nothing to pipeline on their results.
// What stays the same: calls on one object run in the order they arrived (the RPC system delivers them in order,
// and each is started before the next message is read); a call that throws fails with that exception; a call
// that waits (Event.wait) is cancelled by dropping its promise, as before.
//
// Threads: the server's event-loop thread. Processes: server process only.
// Lifetime: the returned capability owns the server object; thisCap() inside it is a LocalClient's (calls made
//   through it, and local calls on the returned capability, take LocalClient's path).
// REQUIRES: no method of `server` returns a capability, tail-calls or streams.
#pragma once

#include <capnp/capability.h>
#include <kj/memory.h>

namespace ipc::manager::detail {

capnp::Capability::Client direct_client(kj::Own<capnp::Capability::Server> server);

}  // namespace ipc::manager::detail
