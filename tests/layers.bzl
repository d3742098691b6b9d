"""The `sources` filegroup each package hands to //tests:layers_test."""

def layer_sources():
    """Every source file of the calling package, for //tests:layers_test (which checks each #include against the
    layer diagram in README.md)."""
    native.filegroup(
        name = "sources",
        srcs = native.glob([
            "**/*.h",
            "**/*.cc",
        ]),
        visibility = ["//tests:__pkg__"],
    )
