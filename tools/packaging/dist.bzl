"""numa_mp_dist: the installable tree (headers, static and shared libraries, pkg-config and CMake files) as a tar.

Bazel builds every component as usual; this rule only gathers what it built. For each library it takes the
transitive closure of the given targets (minus what an earlier library already holds), merges their PIC static
archives into one lib<name>.a, links lib<name>.so from it (against the earlier libraries and the system libraries
given), and copies every header the closure declares (generated Cap'n Proto headers included) under include/. The
.pc and CMake files use paths relative to their own location, so the tree works wherever it is unpacked.
"""

def _archives(dep):
    out = []
    for linker_input in dep[CcInfo].linking_context.linker_inputs.to_list():
        for lib in linker_input.libraries:
            a = lib.pic_static_library or lib.static_library
            if a:
                out.append(a)
    return out

def _dist_impl(ctx):
    inputs = []
    commands = [
        "set -eu",
        "root=$(mktemp -d)",
        "trap 'rm -rf \"$root\"' EXIT",
        "mkdir -p \"$root/include\" \"$root/lib/pkgconfig\" \"$root/lib/cmake/numa_mp\"",
    ]
    headers = {}
    seen_archives = {}
    for dep in ctx.attr.core_deps + ctx.attr.manager_deps:
        for h in dep[CcInfo].compilation_context.headers.to_list():
            if h.short_path.startswith("third_party/") or h.short_path.startswith("external/"):
                continue
            headers[h.short_path] = h
    for short_path, h in headers.items():
        inputs.append(h)
        commands.append("install -D -m 0644 '%s' \"$root/include/%s\"" % (h.path, short_path))

    libraries = [
        ("numa_mp", ctx.attr.core_deps, ctx.attr.core_libs, ""),
        ("numa_mp_manager", ctx.attr.manager_deps, ctx.attr.manager_libs, "-L\"$root/lib\" -lnuma_mp"),
    ]
    for name, deps, system_libs, earlier in libraries:
        archives = []
        for dep in deps:
            for a in _archives(dep):
                if a.path not in seen_archives:
                    seen_archives[a.path] = True
                    archives.append(a)
        inputs.extend(archives)

        # GNU ar's MRI script merges archives without unpacking them (object names may repeat across archives).
        mri = ["create $root/lib/lib%s.a" % name] + ["addlib %s" % a.path for a in archives] + ["save", "end"]
        commands.append("printf '%%s\\n' %s | ar -M" % " ".join(["\"%s\"" % line for line in mri]))
        # Under --config=asan/tsan the objects are instrumented; the shared library links the runtime they need.
        commands.append(
            "san=; if nm -u \"$root/lib/lib%s.a\" | grep -q __asan_; then san=-fsanitize=address,undefined; " % name +
            "elif nm -u \"$root/lib/lib%s.a\" | grep -q __tsan_; then san=-fsanitize=thread; fi" % name,
        )
        commands.append(
            "g++ $san -shared -o \"$root/lib/lib%s.so\" -Wl,-soname,lib%s.so -Wl,--whole-archive \"$root/lib/lib%s.a\" " %
            (name, name, name) + "-Wl,--no-whole-archive %s %s -Wl,--no-undefined -Wl,-rpath,'$ORIGIN'" % (earlier, " ".join(system_libs)),
        )

    for template in ctx.files.templates:
        commands.append("cp '%s' \"$root/lib/%s\"" % (
            template.path,
            ("pkgconfig/" if template.basename.endswith(".pc") else "cmake/numa_mp/") + template.basename,
        ))
        inputs.append(template)
    commands.append("tar -C \"$root\" -cf '%s' --sort=name --owner=0 --group=0 --mtime=@0 include lib" %
                    ctx.outputs.tar.path)

    ctx.actions.run_shell(
        inputs = inputs,
        outputs = [ctx.outputs.tar],
        command = "\n".join(commands),
        mnemonic = "NumaMpDist",
        progress_message = "Packing the installable tree %s" % ctx.outputs.tar.short_path,
        use_default_shell_env = True,
    )
    return [DefaultInfo(files = depset([ctx.outputs.tar]), runfiles = ctx.runfiles(files = [ctx.outputs.tar]))]

numa_mp_dist = rule(
    implementation = _dist_impl,
    attrs = {
        "core_deps": attr.label_list(providers = [CcInfo], doc = "targets whose closure is libnuma_mp"),
        "core_libs": attr.string_list(doc = "system libraries libnuma_mp links against"),
        "manager_deps": attr.label_list(providers = [CcInfo], doc = "targets whose closure (minus core) is libnuma_mp_manager"),
        "manager_libs": attr.string_list(doc = "system libraries libnuma_mp_manager links against"),
        "templates": attr.label_list(allow_files = True, doc = ".pc and CMake files copied as they are"),
    },
    outputs = {"tar": "%{name}.tar"},
)
