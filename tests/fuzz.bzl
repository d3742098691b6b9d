"""fuzz_target(): one libFuzzer target and the regression test that replays its checked-in corpus (docs/fuzzing.md)."""

def fuzz_target(name, srcs, deps, corpus = None):
    """Declares, from sources that define LLVMFuzzerTestOneInput:

    name + "_regression": a cc_test that replays every file under `corpus` (default "corpus/" + name: seeds and the
        reproducer of every crash found) through the same function. Plain `bazel test //...` runs it with any
        compiler; it needs no clang.
    name: the libFuzzer binary (tagged manual; it builds only with clang: `--config=fuzz`, see
        tests/run_fuzzers.sh), which links libFuzzer's main and mutates inputs starting from the corpus.
    """
    corpus = corpus or "corpus/" + name
    native.cc_library(
        name = name + "_target",
        testonly = True,
        srcs = srcs,
        deps = deps,
        alwayslink = True,
    )
    native.cc_test(
        name = name + "_regression",
        size = "small",
        args = [native.package_name() + "/" + corpus],
        data = native.glob([corpus + "/**"]),
        deps = [
            ":" + name + "_target",
            "//tests:fuzz_replay",
        ],
    )
    native.cc_binary(
        name = name,
        testonly = True,
        linkopts = ["-fsanitize=fuzzer"],
        tags = [
            "fuzz",
            "manual",
        ],
        deps = [":" + name + "_target"],
    )
