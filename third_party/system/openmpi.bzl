"""@openmpi: Debian's Open MPI (libopenmpi-dev) for the opt-in MPI targets, which are all tagged "manual".

Bazel runs this rule only when a target that depends on @openmpi is built (or a query walks into it), so `//...`
never needs Open MPI. Without Open MPI installed, @openmpi//:mpi is a target whose build fails with the command that
installs it, rather than a missing-folder error (and, once it is installed, with `./bazelw shutdown`: Bazel reads a
repository again only when its server restarts).
"""

_FOUND = """
cc_library(
    name = "mpi",
    hdrs = glob(["include/**/*.h"]),
    includes = ["include"],
    # The C API only: without it mpi.h also declares the C++ bindings MPI-3 removed (and -lmpi_cxx would be needed).
    defines = ["OMPI_SKIP_MPICXX"],
    linkopts = ["-L{lib}", "-lmpi"],
    visibility = ["//visibility:public"],
)
"""

# Bazel keeps a repository until its server restarts: Open MPI installed since then is named as such.
_MISSING = """
genrule(
    name = "open_mpi_is_not_installed",
    outs = ["mpi.h"],
    cmd = "if [ -e {path}/include/mpi.h ]; then " +
          "echo 'Open MPI was installed after Bazel looked for it: run ./bazelw shutdown once, then build again' >&2; " +
          "else echo 'Open MPI is not installed (no {path}/include/mpi.h): apt-get install openmpi-bin libopenmpi-dev' >&2; fi; " +
          "exit 1",
)

cc_library(
    name = "mpi",
    hdrs = [":open_mpi_is_not_installed"],
    visibility = ["//visibility:public"],
)
"""

def _openmpi_repository_impl(ctx):
    root = ctx.path(ctx.attr.path)
    include = root.get_child("include")
    if include.get_child("mpi.h").exists:
        ctx.symlink(include, "include")
        ctx.file("BUILD", _FOUND.format(lib = ctx.attr.path + "/lib"))
    else:
        ctx.file("BUILD", _MISSING.format(path = ctx.attr.path))

openmpi_repository = repository_rule(
    implementation = _openmpi_repository_impl,
    attrs = {"path": attr.string(mandatory = True)},
    local = True,
)
