@0xf9bf4fe86db3bc18;
# Schema for capnp_codec_test.cc: nested structs, lists, text, data and a union, so that validation has pointers of
# every kind to follow.

struct Sample {
  id @0 :UInt64;
  name @1 :Text;
  payload @2 :Data;
  tags @3 :List(Text);
  points @4 :List(Point);
  child @5 :Sample;
  shape :union {
    none @6 :Void;
    circle @7 :Float64;
    label @8 :Text;
  }
}

struct Point {
  x @0 :Int32;
  y @1 :Int32;
}
