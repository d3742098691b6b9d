# manager/test_service.capnp: a user-defined interface served next to the built-in objects (service_test.cc).
@0xd3b1f4e2a9c07b15;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ipc::manager::testing");

interface Calculator {
  add @0 (a :Int64, b :Int64) -> (sum :Int64);
  # Counts calls across all clients, to show the service is one shared object in the server.
  calls @1 () -> (count :UInt64);
}
