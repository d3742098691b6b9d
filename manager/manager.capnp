# manager/manager.capnp: the Manager's wire schema. Any Cap'n Proto speaker can use it (see docs/manager.md).
#
# Connection flow: the bootstrap capability of every connection is an Authenticator. The client asks for a
# challenge, proves knowledge of the shared key with an HMAC-SHA-256 over the server's nonce and its own, and only
# then receives the root Manager capability. Every shared object is a capability obtained from the Manager.
#
# Timeouts are in nanoseconds; a negative timeout waits forever, zero polls.
# Errors: a failed call carries a Cap'n Proto exception whose description starts with a tag that names the class
# ("[InvalidArgument] ", "[StateError] ", "[Unsupported] "); a dropped connection is a DISCONNECTED exception.

@0xca26272b4d18f458;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ipc::manager::wire");

# A structured value: what dicts, lists, queues and the rest hold.
struct Value {
  union {
    null @0 :Void;
    bool @1 :Bool;
    int @2 :Int64;
    float @3 :Float64;
    text @4 :Text;
    bytes @5 :Data;
    list @6 :List(Value);
    map @7 :List(Entry);   # keys are unique; order is the server's (sorted by key)
    ref @8 :ObjectRef;     # a reference to another object of the same Manager ("nested proxy")
  }
}

struct Entry {
  key @0 :Text;
  value @1 :Value;
}

enum Kind {
  dict @0;
  list @1;
  namespace @2;
  queue @3;
  lock @4;
  event @5;
  value @6;
  counter @7;
}

struct ObjectRef {
  name @0 :Text;
  kind @1 :Kind;
}

# The typed capability of one shared object.
struct Object {
  union {
    dict @0 :Dict;
    list @1 :SharedList;
    namespace @2 :Namespace;
    queue @3 :Queue;
    lock @4 :Lock;
    event @5 :Event;
    value @6 :SharedValue;
    counter @7 :Counter;
  }
}

interface Authenticator {
  # Step 1: a fresh 32-byte server nonce, valid for one `respond` on this connection.
  challenge @0 () -> (serverNonce :Data);

  # Step 2: proof = HMAC-SHA-256(key, "numa_mp manager v1 client" || serverNonce || clientNonce).
  # On success the server proves it knows the key too:
  #   serverProof = HMAC-SHA-256(key, "numa_mp manager v1 server" || clientNonce || serverNonce),
  # and hands out the Manager together with the largest message (bytes) it accepts.
  # A wrong proof fails the call and closes the connection; the key itself never crosses the socket.
  respond @1 (proof :Data, clientNonce :Data) -> (manager :Manager, serverProof :Data, maxMessageBytes :UInt64);
}

interface Manager {
  # Opens the object `name`; with `create`, creates it (of `kind`) when absent. An existing object of another
  # kind is an error ("[InvalidArgument] ... is a dict, not a list"); a missing one without `create` is a
  # "[StateError]". `maxSize` bounds a new queue (0 = unbounded); ignored otherwise.
  open @0 (name :Text, kind :Kind, create :Bool, maxSize :UInt64) -> (object :Object);

  # Removes `name`; capabilities still held to it then fail with "[StateError] ... was removed".
  remove @1 (name :Text) -> (removed :Bool);

  # Names and kinds of every object, sorted by name.
  list @2 () -> (objects :List(ObjectRef));

  # A user interface registered with the server (`Server::serve`); "[StateError]" when no such service.
  getService @3 (name :Text) -> (service :Capability);

  # What the server holds now: every object (as `list`) and every open connection, the caller's included.
  status @4 () -> (objects :List(ObjectRef), clients :List(ConnectedClient));
}

# One open connection to the server, as `status` reports it.
struct ConnectedClient {
  pid @0 :Int32;               # the peer process (SO_PEERCRED when it connected); 0 when unknown
  uid @1 :UInt32;
  authenticated @2 :Bool;      # false: still in the challenge-response handshake
  connectedMs @3 :UInt64;      # how long ago it connected, in milliseconds
  address @4 :Text;            # a TCP peer's "tcp:HOST:PORT" (its pid and uid are then 0: unknown); empty for Unix
  caller @5 :Bool;             # the connection that asked for this status
  sharedMemory @6 :Bool;       # its bytes go through rings in shared memory (ClientOptions::transport), not the socket
}

interface Dict {
  set @0 (key :Text, value :Value);
  get @1 (key :Text) -> (found :Bool, value :Value);
  erase @2 (key :Text) -> (erased :Bool);
  size @3 () -> (size :UInt64);
  keys @4 () -> (keys :List(Text));
  items @5 () -> (entries :List(Entry));
  update @6 (entries :List(Entry));
  clear @7 ();
}

interface SharedList {
  # Indices follow Python: negative counts from the end; out of range is "[InvalidArgument]".
  append @0 (value :Value);
  get @1 (index :Int64) -> (value :Value);
  set @2 (index :Int64, value :Value);
  pop @3 (index :Int64) -> (value :Value);
  size @4 () -> (size :UInt64);
  items @5 () -> (values :List(Value));
  extend @6 (values :List(Value));
  clear @7 ();
}

interface Namespace {
  setAttr @0 (name :Text, value :Value);
  getAttr @1 (name :Text) -> (found :Bool, value :Value);
  delAttr @2 (name :Text) -> (deleted :Bool);
  attrs @3 () -> (entries :List(Entry));
}

interface Queue {
  # put waits while a bounded queue is full; get waits while it is empty. Both return false on timeout.
  # close() fails every waiter and later put with ok = false / closed = true; get drains what is left first.
  # An item whose get reply never reached the consumer (its connection died first) goes back to the front.
  # countsTaken: the caller counts each item it takes (QueueProxy::get; docs/manager.md, "Queue items and dying
  # consumers"): in the connection's shared rings, or with a kItemTaken frame on a socket, so that an item whose
  # reply it read but whose get never returned (the process died in between) is counted as abandoned.
  put @0 (value :Value, timeoutNs :Int64) -> (ok :Bool, closed :Bool);
  get @1 (timeoutNs :Int64, countsTaken :Bool) -> (ok :Bool, closed :Bool, value :Value);
  size @2 () -> (size :UInt64);
  close @3 ();

  # Items handed to a consumer that read them and died inside its get (countsTaken), or whose connection then died
  # without the server knowing whether it received them.
  abandoned @4 () -> (count :UInt64);
}

interface Lock {
  # Holding the lock is holding `holder`: release it explicitly, or drop the capability (a client that
  # disconnects or dies drops all of its capabilities, so its locks are released).
  acquire @0 (timeoutNs :Int64) -> (acquired :Bool, holder :Holder);
  locked @1 () -> (locked :Bool);

  interface Holder {
    release @0 ();
  }
}

interface Event {
  set @0 ();
  clear @1 ();
  isSet @2 () -> (set :Bool);
  wait @3 (timeoutNs :Int64) -> (set :Bool);
}

interface SharedValue {
  get @0 () -> (value :Value);
  set @1 (value :Value);
  # Stores `desired` if the current value equals `expected`; returns the value seen before.
  compareExchange @2 (expected :Value, desired :Value) -> (exchanged :Bool, previous :Value);
}

interface Counter {
  add @0 (delta :Int64) -> (value :Int64);
  get @1 () -> (value :Int64);
  set @2 (value :Int64);
}
