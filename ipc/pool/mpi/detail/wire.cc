#include "ipc/pool/mpi/detail/wire.h"

#include <elf.h>
#include <link.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <typeinfo>

#include "ipc/base/error.h"

namespace ipc::mpi::detail {
namespace {

enum Kind : uint8_t {
  kTaskError,
  kWorkerLost,
  kTaskTimeout,
  kPoolTerminated,
  kInvalidArgument,
  kStateError,
  kNotFound,
  kUnsupported,
  kSystemError,
  kOtherError,
};

std::string demangled_type(const std::exception& e) {
  int status = 0;
  char* name = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
  std::string out = status == 0 && name ? name : typeid(e).name();
  std::free(name);
  return out;
}

}  // namespace

WireError describe_current_exception() {
  try {
    throw;
  } catch (const TaskError& e) {
    return {kTaskError, e.type_name(), e.message(), 0, 0};
  } catch (const WorkerLost& e) {
    return {kWorkerLost, "", e.what(), e.pid(), e.exitcode()};
  } catch (const TaskTimeout& e) {
    return {kTaskTimeout, "", e.what(), 0, 0};
  } catch (const PoolTerminated& e) {
    return {kPoolTerminated, "", e.what(), 0, 0};
  } catch (const InvalidArgument& e) {
    return {kInvalidArgument, "", e.what(), 0, 0};
  } catch (const StateError& e) {
    return {kStateError, "", e.what(), 0, 0};
  } catch (const NotFound& e) {
    return {kNotFound, "", e.what(), 0, 0};
  } catch (const Unsupported& e) {
    return {kUnsupported, "", e.what(), 0, 0};
  } catch (const SystemError& e) {
    return {kSystemError, "", e.what(), 0, e.code()};
  } catch (const std::exception& e) {
    return {kOtherError, demangled_type(e), e.what(), 0, 0};
  } catch (...) {
    return {kOtherError, "unknown exception", "", 0, 0};
  }
}

WireError describe(const ipc::detail::Raise& failure) {
  try {
    failure();
  } catch (...) {
    return describe_current_exception();
  }
  return {kOtherError, "", "a failure that raised nothing", 0, 0};
}

ipc::detail::Raise rebuild(const WireError& error, int rank) {
  using ipc::detail::raise_as;
  const auto& [kind, type_name, message, pid, code] = error;
  const std::string where = "rank " + std::to_string(rank) + ": " + message;
  switch (kind) {
    case kTaskError: return raise_as<TaskError>(type_name, message);
    case kWorkerLost: return raise_as<WorkerLost>(static_cast<int>(pid), static_cast<int>(code), where);
    case kTaskTimeout: return raise_as<TaskTimeout>(where);
    case kPoolTerminated: return raise_as<PoolTerminated>(where);
    case kInvalidArgument: return raise_as<InvalidArgument>(where);
    case kStateError: return raise_as<StateError>(where);
    case kNotFound: return raise_as<NotFound>(where);
    case kUnsupported: return raise_as<Unsupported>(where);
    // SystemError's what() already holds the errno's text; a plain Error keeps it from being said twice.
    case kSystemError: return raise_as<Error>(where);
    default: return raise_as<Error>(type_name.empty() ? where : "rank " + std::to_string(rank) + ": " + type_name + ": " + message);
  }
}

WireOptions to_wire(const PoolOptions& o, uint64_t initializer) {
  std::optional<int64_t> timeout;
  if (o.task_timeout) timeout = o.task_timeout->count();
  return {o.workers,
          o.max_tasks_per_child,
          timeout,
          o.pipe_bytes,
          static_cast<int>(o.placement.strategy),
          o.placement.nodes,
          o.placement.pin,
          static_cast<int>(o.start_method),
          o.scratch_bytes,
          initializer};
}

PoolOptions from_wire(const WireOptions& w, void (*initializer)()) {
  PoolOptions o;
  o.workers = std::get<0>(w);
  o.max_tasks_per_child = std::get<1>(w);
  if (std::get<2>(w)) o.task_timeout = std::chrono::nanoseconds(*std::get<2>(w));
  o.pipe_bytes = std::get<3>(w);
  o.placement.strategy = static_cast<Placement::Strategy>(std::get<4>(w));
  o.placement.nodes = std::get<5>(w);
  o.placement.pin = std::get<6>(w);
  o.start_method = static_cast<StartMethod>(std::get<7>(w));
  o.scratch_bytes = std::get<8>(w);
  if (initializer) o.initializer = initializer;
  return o;
}

uint64_t initializer_of(const WireOptions& w) { return std::get<9>(w); }

std::string program_id() {
  std::string id;
  // The first object dl_iterate_phdr reports is the program itself.
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto& out = *static_cast<std::string*>(data);
        for (int i = 0; i < info->dlpi_phnum && out.empty(); ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_NOTE) continue;
          const size_t align = ph.p_align == 8 ? 8 : 4;
          auto round = [align](size_t n) { return (n + align - 1) / align * align; };
          const char* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
          const char* end = p + ph.p_memsz;
          while (p + sizeof(ElfW(Nhdr)) <= end) {
            ElfW(Nhdr) note;
            std::memcpy(&note, p, sizeof note);
            const char* name = p + sizeof note;
            const char* desc = name + round(note.n_namesz);
            if (desc + note.n_descsz > end) break;
            if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
              for (size_t b = 0; b < note.n_descsz; ++b) {
                char hex[3];
                std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned>(static_cast<unsigned char>(desc[b])));
                out += hex;
              }
              break;
            }
            p = desc + round(note.n_descsz);
          }
        }
        return 1;
      },
      &id);
  if (!id.empty()) return "build id " + id;
  struct stat st{};
  if (::stat("/proc/self/exe", &st) == 0) return "a program of " + std::to_string(st.st_size) + " bytes";
  return "an unknown program";
}

}  // namespace ipc::mpi::detail
