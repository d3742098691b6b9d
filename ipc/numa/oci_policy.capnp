@0xc6f2a1b7d3e49a01;
# The OCI runtime-spec linux.memoryPolicy object, for Cap'n Proto's JSON codec:
#   {"mode": "MPOL_INTERLEAVE", "nodes": "0,1", "flags": ["MPOL_F_STATIC_NODES"]}

struct OciMemoryPolicy {
  mode @0 :Text;
  nodes @1 :Text;
  flags @2 :List(Text);
}
