"""Forwards to Bazel's native C++ rules.

Bazel 4.2.3 (Debian's bazel-bootstrap) loads these names from @rules_cc; the upstream rules_cc is not
reachable offline and Debian's packaged one is too new for Bazel 4. Plain forwards are all it needs.
"""

def cc_library(**kwargs):
    native.cc_library(**kwargs)

def cc_binary(**kwargs):
    native.cc_binary(**kwargs)

def cc_test(**kwargs):
    native.cc_test(**kwargs)

def cc_toolchain(**kwargs):
    native.cc_toolchain(**kwargs)

def cc_toolchain_suite(**kwargs):
    native.cc_toolchain_suite(**kwargs)
