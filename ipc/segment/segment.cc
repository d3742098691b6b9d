#include "ipc/segment/segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/interprocess/indexes/null_index.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "ipc/base/checked_math.h"
#include "ipc/base/process.h"
#include "ipc/numa/reserve.h"
#include "ipc/segment/detail/directory.h"
#include "ipc/segment/detail/robust_allocator_mutex.h"

namespace ipc {
namespace bip = boost::interprocess;

namespace {

constexpr char kShmDir[] = "/dev/shm/";
// Temporaries are named numa_mp~<pid>~<counter>~<name>: '~' never appears in a valid name, so a temporary can
// never collide with a segment, and its creator's pid is in the name for remove_stale().
constexpr char kTempPrefix[] = "numa_mp~";
constexpr uint64_t kMagic = 0x4753504d414d554eULL;  // "NUMAMPSG"
constexpr uint32_t kLayoutVersion = 3;  // 2: robust allocator mutexes; 3: the directory of named blocks
constexpr size_t kMinSize = 4096;
constexpr size_t kHugePageSize = 2 * 1024 * 1024;

constexpr uint32_t kMaxNames = 1 << 20;
// Room the managed buffer needs beyond its own bookkeeping for a segment to be of any use.
constexpr size_t kMinManagedBytes = 1024;

// The allocator inside the segment, locked by a robust process-shared mutex (Boost's default
// managed_external_buffer uses a null mutex, only safe in one process, and its interprocess mutexes are not
// robust: a process killed while allocating would hang everyone after it). Names are not Boost's: they live in
// the segment's directory (null_index), which lookups read without any lock.
using ManagedBuffer = bip::basic_managed_external_buffer<
    char, bip::rbtree_best_fit<segment_detail::RobustMutexFamily>, bip::null_index>;

std::string file_name(std::string_view name) { return std::string(Segment::kFilePrefix) + std::string(name); }
std::string path_of(std::string_view name) { return kShmDir + file_name(name); }

std::atomic<uint32_t> temp_counter{0};


struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// The first bytes of every segment. Written once by the creator before the segment is published under its name,
// read-only afterwards, so it needs no synchronisation.
struct SegmentHeader {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t huge_pages;
  uint64_t size_bytes;
  int32_t creator_pid;
  uint32_t creator_uid;
  numa::MemoryPolicy policy;
  uint64_t directory_offset;  // where the directory of named blocks starts
  uint64_t managed_offset;    // where the Boost managed buffer starts
};
static_assert(std::is_trivially_copyable_v<SegmentHeader>, "the header is shared memory, read with pread too");

// Where the parts of a segment go: header, directory, managed buffer, each 64-byte aligned.
struct Layout {
  uint32_t names;
  uint64_t directory_offset;
  uint64_t managed_offset;
};

Layout layout_for(size_t size_bytes, uint32_t max_names) {
  if (max_names > kMaxNames) {
    throw InvalidArgument("max_names " + std::to_string(max_names) + " exceeds " + std::to_string(kMaxNames));
  }
  const uint32_t names =
      max_names ? max_names : static_cast<uint32_t>(std::clamp<size_t>(size_bytes / 4096, 16, 4096));
  Layout l;
  l.names = names;
  l.directory_offset = (sizeof(SegmentHeader) + 63) / 64 * 64;
  l.managed_offset = l.directory_offset + segment_detail::Directory::bytes_for(names);
  if (l.managed_offset + kMinManagedBytes > size_bytes) {
    throw InvalidArgument("a segment of " + std::to_string(size_bytes) + " bytes has no room for a directory of " +
                          std::to_string(names) + " names (128 bytes each) and " +
                          std::to_string(kMinManagedBytes) + " bytes to allocate from");
  }
  return l;
}

static_assert(Segment::kMaxBlockName == segment_detail::kNameWords * 8 - 1, "names are stored NUL-padded");

// The object names inside a segment: 1..63 bytes, no NUL (they are stored NUL-padded).
void validate_block_name(std::string_view name) {
  if (name.empty() || name.size() > Segment::kMaxBlockName || name.find('\0') != std::string_view::npos) {
    throw InvalidArgument("object names inside a segment must be 1.." + std::to_string(Segment::kMaxBlockName) +
                          " bytes without NUL, got '" + std::string(name) + "' (" + std::to_string(name.size()) +
                          " bytes)");
  }
}

// "a Lock", "an Array": for messages that name a kind.
std::string with_article(std::string_view kind) {
  const bool vowel = !kind.empty() && std::string_view("AEIOUaeiou").find(kind.front()) != std::string_view::npos;
  return (vowel ? "an " : "a ") + std::string(kind);
}

void validate_alignment(size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) || alignment > 4096) {
    throw InvalidArgument("alignment " + std::to_string(alignment) + " must be a power of two up to 4096");
  }
}

}  // namespace

struct Segment::Header : SegmentHeader {};

struct Segment::Impl {
  ManagedBuffer managed;
  segment_detail::Directory directory;
  pid_t owner_pid = 0;  // the process whose handle owns the name; forked copies never unlink
  dev_t dev = 0;
  ino_t ino = 0;
};

void Segment::validate_name(std::string_view name) {
  if (name.empty() || name.size() > 200) {
    throw InvalidArgument("segment name must be 1..200 characters, got " + std::to_string(name.size()));
  }
  if (name.front() == '.') throw InvalidArgument("segment name '" + std::string(name) + "' must not start with '.'");
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      throw InvalidArgument("segment name '" + std::string(name) + "' has '" + std::string(1, c) +
                            "'; allowed are letters, digits, '_', '-' and '.'");
    }
  }
}

Segment::Segment(std::string name, void* base, size_t size, bool owner)
    : name_(std::move(name)), base_(base), size_(size), owner_(owner), impl_(std::make_unique<Impl>()) {}

Segment::Segment(Segment&& other) noexcept
    : name_(std::exchange(other.name_, {})),
      base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      owner_(std::exchange(other.owner_, false)),
      impl_(std::move(other.impl_)) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    release();
    name_ = std::exchange(other.name_, {});
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    owner_ = std::exchange(other.owner_, false);
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Segment::~Segment() { release(); }

void Segment::release() noexcept {
  if (!base_) return;
  if (owner_ && impl_ && impl_->owner_pid == getpid()) {
    // Unlink only the segment this handle created: if the name was removed and reused meanwhile, leave it.
    struct stat st;
    std::string path = path_of(name_);
    if (stat(path.c_str(), &st) == 0 && st.st_dev == impl_->dev && st.st_ino == impl_->ino) unlink(path.c_str());
  }
  impl_.reset();  // the managed buffer handle only refers to the mapping; drop it before unmapping
  munmap(base_, size_);
  base_ = nullptr;
  size_ = 0;
  owner_ = false;
}

Segment Segment::create(std::string_view name, size_t size_bytes, const SegmentOptions& options) {
  validate_name(name);
  if (size_bytes < kMinSize) {
    throw InvalidArgument("segment size " + std::to_string(size_bytes) + " is below the minimum of 4096 bytes");
  }
  if (options.huge_pages == HugePages::kTransparent) {
    size_bytes = checked_round_up(size_bytes, kHugePageSize, "segment size in whole 2 MiB pages");
  }
  if (size_bytes > static_cast<size_t>(std::numeric_limits<off_t>::max())) {
    throw InvalidArgument("segment size " + std::to_string(size_bytes) + " bytes exceeds the largest file size (" +
                          std::to_string(std::numeric_limits<off_t>::max()) + " bytes)");
  }
  const Layout layout = layout_for(size_bytes, options.max_names);
  if (options.permissions & ~0777) throw InvalidArgument("segment permissions must be within 0777");
  if ((options.permissions & 0600) != 0600) {
    throw InvalidArgument("segment permissions must let the owner read and write (0600)");
  }
  // Every rule is checked before anything exists on the system.
  options.policy.validate_for_this_machine();
  if (options.huge_pages == HugePages::kTransparent) {
    std::ifstream thp("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
    std::string modes((std::istreambuf_iterator<char>(thp)), std::istreambuf_iterator<char>());
    if (modes.empty() || modes.find("[never]") != std::string::npos || modes.find("[deny]") != std::string::npos) {
      throw Unsupported("transparent huge pages for shared memory are disabled on this machine "
                        "(/sys/kernel/mm/transparent_hugepage/shmem_enabled)");
    }
  }
  const std::string final_path = path_of(name);
  if (access(final_path.c_str(), F_OK) == 0) throw SegmentExists("segment '" + std::string(name) + "' already exists");

  // Build under a private temporary name, publish with link(2) (atomic, fails if the name exists), so that nobody
  // can open a half-initialised segment and a crash here leaves only a temporary.
  const std::string temp_path = kShmDir + std::string(kTempPrefix) + std::to_string(getpid()) + "~" +
                                std::to_string(temp_counter.fetch_add(1, std::memory_order_relaxed)) + "~" +
                                std::string(name);
  Fd fd;
  fd.fd = retry_on_eintr([&] { return ::open(temp_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600); });
  if (fd.fd < 0) throw_errno("create shared memory " + temp_path);
  struct TempGuard {
    const std::string& path;
    bool armed = true;
    ~TempGuard() {
      if (armed) unlink(path.c_str());
    }
  } temp_guard{temp_path};
  // fchmod, not the open mode: the umask must not widen or narrow what the caller asked for.
  if (fchmod(fd.fd, options.permissions) != 0) throw_errno("fchmod " + temp_path);
  if (retry_on_eintr([&] { return ftruncate(fd.fd, static_cast<off_t>(size_bytes)); }) != 0) {
    throw_errno("ftruncate " + temp_path + " to " + std::to_string(size_bytes) + " bytes");
  }
  void* base = mmap(nullptr, size_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
  if (base == MAP_FAILED) throw_errno("mmap " + temp_path);
  Segment seg(std::string(name), base, size_bytes, /*owner=*/false);
  if (options.huge_pages == HugePages::kTransparent && madvise(base, size_bytes, MADV_HUGEPAGE) != 0) {
    throw_errno("madvise(MADV_HUGEPAGE)");
  }
  // The policy goes on the shm object itself (a shared policy), before the header write below touches the first
  // page, so every page any process faults in later follows it.
  options.policy.apply(base, size_bytes);
  // Then the pages are reserved, each placed by that shared policy: too little room fails here, not as a SIGBUS at
  // some process's first touch. The temporary is unlinked and unmapped on the way out.
  const numa::ReservedFile file{fd.fd, "segment '" + std::string(name) + "'", "/dev/shm"};
  if (options.reserve) {
    numa::reserve_pages(file, size_bytes, options.policy);
  } else {
    numa::check_room(file, size_bytes, options.policy);
  }

  Header* h = seg.header();
  h->magic = kMagic;
  h->layout_version = kLayoutVersion;
  h->huge_pages = options.huge_pages == HugePages::kTransparent;
  h->size_bytes = size_bytes;
  h->creator_pid = getpid();
  h->creator_uid = geteuid();
  h->policy = options.policy;
  h->directory_offset = layout.directory_offset;
  h->managed_offset = layout.managed_offset;
  segment_detail::Directory::init(seg.at(h->directory_offset), layout.names);
  seg.impl_->directory = segment_detail::Directory(seg.at(h->directory_offset));
  new (&seg.impl_->managed) ManagedBuffer(bip::create_only, static_cast<char*>(base) + h->managed_offset,
                                          size_bytes - h->managed_offset);

  if (link(temp_path.c_str(), final_path.c_str()) != 0) {
    if (errno == EEXIST) throw SegmentExists("segment '" + std::string(name) + "' already exists");
    throw_errno("publish segment " + final_path);
  }
  struct stat st;
  if (fstat(fd.fd, &st) != 0) throw_errno("fstat " + final_path);
  seg.owner_ = true;
  seg.impl_->owner_pid = getpid();
  seg.impl_->dev = st.st_dev;
  seg.impl_->ino = st.st_ino;
  return seg;
}

Segment Segment::open(std::string_view name) {
  validate_name(name);
  const std::string path = path_of(name);
  Fd fd;
  fd.fd = retry_on_eintr([&] { return ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW); });
  if (fd.fd < 0) {
    if (errno == ENOENT) throw NotFound("no segment named '" + std::string(name) + "'");
    throw_errno("open segment " + path);
  }
  struct stat st;
  if (fstat(fd.fd, &st) != 0) throw_errno("fstat " + path);
  if (st.st_uid != geteuid()) {
    throw SystemError(EACCES, "segment '" + std::string(name) + "' belongs to uid " + std::to_string(st.st_uid) +
                                  ", not to this user (uid " + std::to_string(geteuid()) + ")");
  }
  if (!S_ISREG(st.st_mode) || static_cast<size_t>(st.st_size) < kMinSize) {
    throw InvalidArgument("'" + path + "' is not a numa_mp segment (size " + std::to_string(st.st_size) + ")");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
  if (base == MAP_FAILED) throw_errno("mmap " + path);
  Segment seg(std::string(name), base, size, /*owner=*/false);
  const Header* h = seg.header();
  if (h->magic != kMagic || h->size_bytes != size) {
    throw InvalidArgument("'" + path + "' is not a numa_mp segment (bad header)");
  }
  if (h->layout_version != kLayoutVersion) {
    throw InvalidArgument("segment '" + std::string(name) + "' has layout version " +
                          std::to_string(h->layout_version) + "; this library reads version " +
                          std::to_string(kLayoutVersion));
  }
  if (h->directory_offset % 64 != 0 || h->directory_offset < sizeof(SegmentHeader) ||
      h->directory_offset > h->managed_offset || h->managed_offset > size - kMinManagedBytes ||
      segment_detail::Directory::bytes_for(seg.at<segment_detail::DirectoryHeader>(h->directory_offset)->capacity) !=
          h->managed_offset - h->directory_offset) {
    throw InvalidArgument("'" + path + "' is not a numa_mp segment (bad layout)");
  }
  seg.impl_->directory = segment_detail::Directory(seg.at(h->directory_offset));
  new (&seg.impl_->managed) ManagedBuffer(bip::open_only, static_cast<char*>(base) + h->managed_offset,
                                          size - h->managed_offset);
  return seg;
}

bool Segment::remove(std::string_view name) {
  validate_name(name);
  if (unlink(path_of(name).c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw_errno("remove segment " + path_of(name));
}

const numa::MemoryPolicy& Segment::policy() const { return header()->policy; }

size_t Segment::free_bytes() const { return impl_->managed.get_free_memory(); }

void* Segment::allocate(size_t bytes, size_t alignment) {
  validate_alignment(alignment);
  // Boost's size arithmetic wraps (and asserts) on sizes near 2^64: anything beyond the segment cannot fit anyway.
  void* p = nullptr;
  if (bytes <= size_) {
    p = alignment <= alignof(std::max_align_t) ? impl_->managed.allocate(bytes, std::nothrow)
                                               : impl_->managed.allocate_aligned(bytes, alignment, std::nothrow);
  }
  if (!p) {
    throw SegmentFull("segment '" + name_ + "' has no room for " + std::to_string(bytes) + " bytes (" +
                      std::to_string(free_bytes()) + " free)");
  }
  return p;
}

void Segment::deallocate(void* p) { impl_->managed.deallocate(p); }

Segment::NamedBlock Segment::find_or_create_block_impl(std::string_view name, size_t bytes, size_t alignment,
                                                       const BlockKind& kind, InitFn init, bool exclusive) {
  validate_block_name(name);
  validate_alignment(alignment);
  if (kind.name.empty() || kind.name.size() > segment_detail::kKindWords * 8 - 1) {
    throw InvalidArgument("a block kind's name must be 1..23 bytes, got '" + std::string(kind.name) + "'");
  }
  auto& directory = impl_->directory;
  auto existing = [&](const BlockInfo& b) -> NamedBlock {
    if (exclusive) {
      throw InvalidArgument("segment '" + name_ + "' already has " + with_article(b.kind) + " named '" +
                            std::string(name) + "'");
    }
    check_kind(b, kind);
    return {at(b.offset), b.bytes, true};
  };
  if (!exclusive) {
    if (auto r = directory.find(name)) return existing(*r);  // lock-free: the usual case of a second opener
  }
  std::vector<uint64_t> orphans;
  const auto reservation = directory.reserve(name, kind, orphans);
  // From here until publish() the name is ours (other creators of it wait) and the block is invisible to finders.
  void* p = nullptr;
  try {
    for (uint64_t orphan : orphans) deallocate(at(orphan));
    if (reservation.existing) return existing(*reservation.existing);
    p = allocate(bytes, alignment);
    directory.set_block(reservation, offset_of(p), bytes);
    init.second(init.first, p);
    directory.publish(reservation);
  } catch (...) {
    // The block is ours to free only while the reservation is: whoever reclaims an entry frees its block.
    if (!reservation.existing && directory.withdraw(reservation) && p) deallocate(p);
    throw;
  }
  return {p, bytes, false};
}

Segment::NamedBlock Segment::find_block(std::string_view name, const BlockKind& kind) const {
  validate_block_name(name);
  auto b = impl_->directory.find(name);
  if (!b) return {nullptr, 0, false};
  check_kind(*b, kind);
  return {at(b->offset), b->bytes, true};
}

std::vector<BlockInfo> Segment::blocks() const { return impl_->directory.list(); }

void Segment::check_kind(const BlockInfo& block, const BlockKind& wanted) const {
  if (block.kind_tag != wanted.tag) {
    throw InvalidArgument("object '" + block.name + "' in segment '" + name_ + "' is " + with_article(block.kind) +
                          ", not " + with_article(wanted.name));
  }
}

bool Segment::remove_block(std::string_view name) {
  validate_block_name(name);
  auto offset = impl_->directory.remove(name);
  if (!offset) return false;
  deallocate(at(*offset));
  return true;
}

void Segment::check_size(std::string_view name, size_t have, size_t want) const {
  if (have != want) {
    throw InvalidArgument("object '" + std::string(name) + "' in segment '" + name_ + "' has " +
                          std::to_string(have) + " bytes, the requested type has " + std::to_string(want));
  }
}

namespace {

// (device, inode) of every shared-memory file -> pids of live processes that map it or hold it open, from one
// pass over /proc. Files are matched by inode, not by path: a creator's mapping shows the temporary's path.
using FileId = std::pair<dev_t, ino_t>;
std::map<FileId, std::set<pid_t>> shm_users() {
  std::map<FileId, std::set<pid_t>> users;
  DIR* proc = opendir("/proc");
  if (!proc) return users;
  while (dirent* e = readdir(proc)) {
    char* end;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    const std::string base = std::string("/proc/") + e->d_name;
    std::ifstream maps(base + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
      if (line.find(kShmDir) == std::string::npos) continue;
      // "start-end perms offset major:minor inode path"
      std::istringstream fields(line);
      std::string range, perms, offset, device;
      unsigned long inode = 0;
      fields >> range >> perms >> offset >> device >> inode;
      unsigned major_id = 0, minor_id = 0;
      if (std::sscanf(device.c_str(), "%x:%x", &major_id, &minor_id) != 2) continue;
      users[{makedev(major_id, minor_id), static_cast<ino_t>(inode)}].insert(static_cast<pid_t>(pid));
    }
    if (DIR* fds = opendir((base + "/fd").c_str())) {
      while (dirent* f = readdir(fds)) {
        struct stat st;
        if (f->d_name[0] == '.' || stat((base + "/fd/" + f->d_name).c_str(), &st) != 0) continue;
        if (S_ISREG(st.st_mode)) users[{st.st_dev, st.st_ino}].insert(static_cast<pid_t>(pid));
      }
      closedir(fds);
    }
  }
  closedir(proc);
  return users;
}

// Reads the header of a segment file without attaching to it; nullopt when it cannot be read.
std::optional<std::pair<int32_t, std::string>> read_header(const std::string& path) {
  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd.fd < 0) return std::nullopt;
  SegmentHeader h;
  if (pread(fd.fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h) || h.magic != kMagic ||
      h.layout_version != kLayoutVersion) {
    return std::nullopt;
  }
  return std::make_pair(h.creator_pid, h.policy.to_string());
}

}  // namespace

std::vector<SegmentInfo> Segment::list() {
  std::vector<SegmentInfo> out;
  std::vector<std::pair<dev_t, ino_t>> ids;
  // The directory first, the users second: a segment is mapped by its creator before its name appears (it is
  // built under a temporary name), so every segment listed here already shows its users in /proc below.
  DIR* dir = opendir(kShmDir);
  if (!dir) throw_errno("opendir /dev/shm");
  while (dirent* e = readdir(dir)) {
    std::string file = e->d_name;
    const bool complete = file.rfind(kFilePrefix, 0) == 0;
    const bool temp = file.rfind(kTempPrefix, 0) == 0;
    if (!complete && !temp) continue;
    struct stat st;
    if (stat((kShmDir + file).c_str(), &st) != 0) continue;
    SegmentInfo info;
    info.file = file;
    info.inode = st.st_ino;
    info.complete = complete;
    info.size_bytes = static_cast<size_t>(st.st_size);
    info.owner_uid = st.st_uid;
    if (complete) {
      info.name = file.substr(kFilePrefix.size());
    } else {
      // numa_mp~<pid>~<counter>~<name>
      size_t a = file.find('~', sizeof(kTempPrefix) - 1), b = a == std::string::npos ? a : file.find('~', a + 1);
      info.creator_pid = static_cast<pid_t>(std::strtol(file.c_str() + sizeof(kTempPrefix) - 1, nullptr, 10));
      info.name = b == std::string::npos ? file : file.substr(b + 1);
    }
    info.policy = "?";
    if (auto h = read_header(kShmDir + file)) {
      info.creator_pid = h->first;
      info.policy = h->second;
    }
    ids.emplace_back(st.st_dev, st.st_ino);
    out.push_back(std::move(info));
  }
  closedir(dir);
  const auto users = shm_users();
  for (size_t i = 0; i < out.size(); ++i) {
    if (auto it = users.find(ids[i]); it != users.end()) out[i].users.assign(it->second.begin(), it->second.end());
  }
  return out;
}

std::vector<SegmentInfo> Segment::list_stale(std::string_view name_prefix) {
  std::vector<SegmentInfo> stale;
  for (auto& info : list()) {
    if (info.owner_uid != geteuid() || !info.users.empty()) continue;
    if (info.name.compare(0, name_prefix.size(), name_prefix) != 0) continue;
    // Still being created, unless its creator is gone (dead or a zombie that will never finish).
    if (!info.complete && info.creator_pid > 0 && !process_dead(static_cast<uint32_t>(info.creator_pid))) continue;
    stale.push_back(std::move(info));
  }
  return stale;
}

std::vector<std::string> Segment::remove_stale(std::string_view name_prefix) {
  std::vector<std::string> removed;
  for (const auto& info : list_stale(name_prefix)) {
    // Only the file that was listed: a segment re-created under the same name since then is somebody's new one.
    struct stat st;
    const std::string path = kShmDir + info.file;
    if (stat(path.c_str(), &st) != 0 || st.st_ino != info.inode) continue;
    if (unlink(path.c_str()) == 0) removed.push_back(info.file);
  }
  return removed;
}

}  // namespace ipc
