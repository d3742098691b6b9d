#include "ipc/segment/segment.h"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <random>

#include "ipc/numa/placement.h"
#include "ipc/numa/topology.h"
#include "tests/support/test_support.h"

using ipc::Segment;
using ipc::SegmentOptions;
using ipc::test::ForkedChild;
using ipc::test::unique_name;

namespace {

bool shm_file_exists(const std::string& name) {
  return access(("/dev/shm/numa_mp." + name).c_str(), F_OK) == 0;
}

// The inode of a segment's file in /dev/shm.
ino_t shm_inode(const std::string& name) {
  struct stat st;
  REQUIRE(stat(("/dev/shm/numa_mp." + name).c_str(), &st) == 0);
  return st.st_ino;
}

// Whether this process maps a file of /dev/shm with that inode (the mapping shows its inode even once unlinked).
bool maps_shm_inode(ino_t inode) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("/dev/shm/") == std::string::npos) continue;
    // "start-end perms offset major:minor inode path"
    std::istringstream fields(line);
    std::string range, perms, offset, device;
    unsigned long ino = 0;
    fields >> range >> perms >> offset >> device >> ino;
    if (ino == inode) return true;
  }
  return false;
}

struct Counter {
  std::atomic<uint64_t> value{0};
  char tag[16] = "hello";
};

// Busy for `time`, so that a kill sent afterwards lands at a random point of what another process is doing.
void spin_for(std::chrono::microseconds time) {
  const auto until = std::chrono::steady_clock::now() + time;
  while (std::chrono::steady_clock::now() < until) {
  }
}

// Counts the loop of a child that is about to be killed at a random point of it.
struct Loop {
  std::atomic<uint64_t> iterations{0};
  std::atomic<int> phase{0};  // which part of the loop it is in; 0: none of interest

  // relaxed: both are read by the parent only to pick its moment and after the child's death
  void enter(int p) { phase.store(p, std::memory_order_relaxed); }
  void next() {
    phase.store(0, std::memory_order_relaxed);
    iterations.fetch_add(1, std::memory_order_relaxed);
  }
  // Waits (yielding the CPU) until the child has gone round a few times: it then runs its loop, not its start-up
  // or the wake-up of a notify. False after a minute.
  bool wait_until_running() const {
    const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    while (iterations.load(std::memory_order_relaxed) < 3) {
      if (std::chrono::steady_clock::now() > until) return false;
      sched_yield();
    }
    return true;
  }
  // The phase the child died in; resets for the next child.
  int reset() {
    iterations.store(0, std::memory_order_relaxed);
    return phase.exchange(0, std::memory_order_relaxed);
  }
};

// In a fresh process: opens the segment and finds `name` (a uint64_t) with the value `expected`.
int open_and_check(const std::string& segment, const char* name, uint64_t expected) {
  ForkedChild opener([&] {
    Segment s = Segment::open(segment);
    const uint64_t* p = s.find<uint64_t>(name);
    return p && *p == expected ? 0 : 2;
  });
  return opener.wait().value_or(-1);
}

// The exit code of a check_in_private_shm child that could not set its namespace up (not root, no mount namespaces).
constexpr int kCannotMount = 77;

// Runs `body` in a forked child that has its own mount namespace with /dev/shm replaced by an empty tmpfs of
// `size_mib` MiB, so that a test can fill it without touching the machine's. `body` returns 0 when its checks
// passed, otherwise the line that failed (it prints why to stderr). Checks that the child exited with 0; skips
// (WARN) when this machine does not let it mount (not root).
template <typename Body>
void check_in_private_shm(size_t size_mib, Body body) {
  ForkedChild child([&]() -> int {
    // Private first: the new tmpfs must not propagate back into the machine's mount namespace.
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      std::fprintf(stderr, "private mount namespace: %s\n", std::strerror(errno));
      return kCannotMount;
    }
    const std::string options = "size=" + std::to_string(size_mib) + "m,mode=1777";
    if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
      std::fprintf(stderr, "mount tmpfs on /dev/shm: %s\n", std::strerror(errno));
      return kCannotMount;
    }
    try {
      return body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "unexpected exception: %s\n", e.what());
      return 1;
    }
  });
  const int status = child.wait().value_or(-1);
  if (status == kCannotMount) {
    WARN("skipped: this machine does not let the test mount a tmpfs in a private mount namespace (needs root)");
    return;
  }
  CHECK(status == 0);
}

// In a check_in_private_shm child: the check failed; say so and return the line.
#define SHM_EXPECT(condition, ...)                                                       \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      std::fprintf(stderr, "line %d: %s failed: ", __LINE__, #condition);                \
      std::fprintf(stderr, __VA_ARGS__);                                                 \
      std::fprintf(stderr, "\n");                                                        \
      return __LINE__;                                                                   \
    }                                                                                    \
  } while (0)

// Files in /dev/shm (of this mount namespace).
std::vector<std::string> shm_files() {
  std::vector<std::string> files;
  DIR* dir = opendir("/dev/shm");
  if (!dir) return files;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') files.push_back(e->d_name);
  }
  closedir(dir);
  return files;
}

uint64_t shm_free_bytes() {
  struct statvfs vfs;
  return statvfs("/dev/shm", &vfs) == 0 ? uint64_t(vfs.f_bavail) * vfs.f_frsize : 0;
}

// The message of the ResourceExhausted that `f` throws, or "" when it throws none.
template <typename F>
std::string exhausted_message(F f) {
  try {
    f();
  } catch (const ipc::ResourceExhausted& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a segment created in one process is opened and written by a forked child", "[segment]") {
  const std::string name = unique_name("seg");
  Segment seg = Segment::create(name, 1 << 20);
  Counter& c = seg.construct<Counter>("counter");
  ForkedChild child([&] {
    Segment mine = Segment::open(name);
    Counter* found = mine.find<Counter>("counter");
    if (!found || std::strcmp(found->tag, "hello") != 0) return 2;
    found->value.fetch_add(41, std::memory_order_relaxed);
    auto& extra = mine.construct<uint64_t>("from-child", 7u);
    return extra == 7 ? 0 : 3;
  });
  REQUIRE(child.wait() == 0);
  CHECK(c.value.load(std::memory_order_relaxed) == 41);
  uint64_t* extra = seg.find<uint64_t>("from-child");
  REQUIRE(extra);
  CHECK(*extra == 7);
}

TEST_CASE("named objects are found by name, sized and removable", "[segment]") {
  Segment seg = Segment::create(unique_name("seg"), 1 << 20);
  seg.construct<uint32_t>("x", 5u);
  CHECK(seg.find<uint32_t>("missing") == nullptr);
  CHECK_THROWS_AS(seg.construct<uint32_t>("x", 6u), ipc::InvalidArgument);
  CHECK_THROWS_AS(seg.find<uint64_t>("x"), ipc::InvalidArgument);  // size mismatch is caught
  CHECK(seg.find_or_construct<uint32_t>("x", 9u) == 5u);
  CHECK(seg.destroy<uint32_t>("x"));
  CHECK_FALSE(seg.destroy<uint32_t>("x"));
  CHECK(seg.find<uint32_t>("x") == nullptr);
}

TEST_CASE("the directory holds max_names names at once, and removed names free their entries", "[segment]") {
  SegmentOptions opts;
  opts.max_names = 16;
  Segment seg = Segment::create(unique_name("seg"), 1 << 20, opts);
  std::vector<std::string> live;
  for (uint64_t i = 0; i < 16; ++i) {
    live.push_back("n" + std::to_string(i));
    seg.construct<uint64_t>(live.back(), i);
  }
  CHECK_THROWS_WITH(seg.construct<uint64_t>("one-more", 0u), Catch::Contains("16 names"));
  CHECK_THROWS_AS(seg.construct<uint64_t>("one-more", 0u), ipc::SegmentFull);
  const size_t free_when_full = seg.free_bytes();
  // Many more distinct names than entries, one removed for each created: entries are reused, lookups stay exact.
  for (uint64_t round = 16; round < 2000; ++round) {
    std::string& slot = live[round % 16];
    REQUIRE(seg.destroy<uint64_t>(slot));
    CHECK(seg.find<uint64_t>(slot) == nullptr);
    slot = "m" + std::to_string(round);
    seg.construct<uint64_t>(slot, round);
  }
  CHECK(seg.blocks().size() == 16);
  for (uint64_t i = 0; i < 16; ++i) {
    const uint64_t* v = seg.find<uint64_t>(live[i]);
    REQUIRE(v);
    CHECK(*v % 16 == i);
  }
  CHECK(seg.free_bytes() == free_when_full);
  // Names are 1..63 bytes; a directory too big for the segment is refused before anything is created.
  CHECK_NOTHROW(seg.find<uint64_t>(std::string(63, 'x')));
  CHECK_THROWS_AS(seg.find<uint64_t>(std::string(64, 'x')), ipc::InvalidArgument);
  CHECK_THROWS_AS(seg.find<uint64_t>(""), ipc::InvalidArgument);
  opts.max_names = 1000;
  CHECK_THROWS_WITH(Segment::create(unique_name("seg"), 64 * 1024, opts), Catch::Contains("1000 names"));
}

TEST_CASE("blocks honour their alignment and offsets are the same in every process", "[segment]") {
  const std::string name = unique_name("seg");
  Segment seg = Segment::create(name, 1 << 20);
  struct alignas(64) Line {
    char bytes[64];
  };
  Line& line = seg.construct<Line>("line");
  CHECK(reinterpret_cast<uintptr_t>(&line) % 64 == 0);
  void* page = seg.allocate(100, 4096);
  CHECK(reinterpret_cast<uintptr_t>(page) % 4096 == 0);
  const uint64_t off = seg.offset_of(page);
  std::strcpy(static_cast<char*>(page), "by offset");
  ForkedChild child([&] {
    Segment mine = Segment::open(name);
    return std::strcmp(mine.at<char>(off), "by offset") == 0 ? 0 : 1;
  });
  CHECK(child.wait() == 0);
  CHECK_THROWS_AS(seg.allocate(8, 3), ipc::InvalidArgument);
}

TEST_CASE("a full segment reports SegmentFull and stays usable", "[segment]") {
  Segment seg = Segment::create(unique_name("seg"), 64 * 1024);
  CHECK_THROWS_AS(seg.allocate(1 << 20), ipc::SegmentFull);
  CHECK_THROWS_AS(seg.allocate(SIZE_MAX - 8), ipc::SegmentFull);
  CHECK_THROWS_AS(seg.allocate(SIZE_MAX - 8, 4096), ipc::SegmentFull);
  CHECK_THROWS_AS(seg.find_or_create_block("big", 1 << 20, 8, Segment::kRawBlock, [](void*) {}), ipc::SegmentFull);
  CHECK(seg.find_block("big", Segment::kRawBlock).ptr == nullptr);
  void* p = seg.allocate(1024);
  CHECK(p != nullptr);
}

TEST_CASE("create is exclusive and open of a missing name says so", "[segment]") {
  const std::string name = unique_name("seg");
  Segment seg = Segment::create(name, 8192);
  CHECK_THROWS_AS(Segment::create(name, 8192), ipc::SegmentExists);
  CHECK_THROWS_AS(Segment::open(unique_name("absent")), ipc::NotFound);
}

TEST_CASE("bad names and sizes are rejected with a clear error and create nothing", "[segment]") {
  for (const char* bad : {"", ".hidden", "a/b", "white space", "tilde~x", "semi;colon"}) {
    INFO(bad);
    CHECK_THROWS_AS(Segment::create(bad, 8192), ipc::InvalidArgument);
  }
  CHECK_THROWS_AS(Segment::create(std::string(201, 'a'), 8192), ipc::InvalidArgument);
  const std::string name = unique_name("seg");
  CHECK_THROWS_WITH(Segment::create(name, 100), Catch::Contains("minimum"));
  CHECK_FALSE(shm_file_exists(name));
  SegmentOptions no_owner_write;
  no_owner_write.permissions = 0400;
  CHECK_THROWS_AS(Segment::create(name, 8192, no_owner_write), ipc::InvalidArgument);
  CHECK_FALSE(shm_file_exists(name));
}

TEST_CASE("a segment size that cannot be a file size is refused before anything is created", "[segment]") {
  const std::string name = unique_name("seg");
  for (size_t size : {SIZE_MAX, SIZE_MAX - 4095, size_t{1} << 63}) {
    INFO(size);
    CHECK_THROWS_WITH(Segment::create(name, size), Catch::Contains(std::to_string(size)));
    CHECK_THROWS_AS(Segment::create(name, size), ipc::InvalidArgument);
  }
  SegmentOptions huge;
  huge.huge_pages = ipc::HugePages::kTransparent;
  // Rounding up to whole 2 MiB pages would wrap to a tiny size unchecked.
  CHECK_THROWS_AS(Segment::create(name, SIZE_MAX - 4095, huge), ipc::InvalidArgument);
  CHECK_FALSE(shm_file_exists(name));
}

TEST_CASE("segments are 0600 by default and take the permissions asked for", "[segment]") {
  const std::string name = unique_name("seg");
  Segment seg = Segment::create(name, 8192);
  struct stat st;
  REQUIRE(stat(("/dev/shm/numa_mp." + name).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  SegmentOptions group;
  group.permissions = 0660;
  const std::string name2 = unique_name("seg");
  Segment seg2 = Segment::create(name2, 8192, group);
  REQUIRE(stat(("/dev/shm/numa_mp." + name2).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0660);
}

TEST_CASE("a segment that belongs to another user is refused", "[segment]") {
  const std::string name = unique_name("seg");
  Segment seg = Segment::create(name, 8192);
  if (chown(("/dev/shm/numa_mp." + name).c_str(), 65534, 65534) != 0) {
    // Only root can give a file away; without it this machine cannot stage another user's segment.
    WARN("not root: cannot stage another user's segment");
    return;
  }
  try {
    Segment::open(name);
    FAIL("opened another user's segment");
  } catch (const ipc::SystemError& e) {
    CHECK(e.code() == EACCES);
    CHECK_THAT(e.what(), Catch::Contains("belongs to uid 65534"));
  }
}

TEST_CASE("a segment another user created, queue and all, is refused and never removed as stale", "[segment][security]") {
  if (geteuid() != 0) {
    WARN("skipped: only root can start a child as another user (uid 65534)");
    return;
  }
  const std::string name = unique_name("seg");
  ForkedChild other_user([&] {
    if (setgid(65534) != 0 || setuid(65534) != 0) return 2;
    Segment mine = Segment::create(name, 1 << 16);
    mine.construct<uint64_t>("queue-state", 1u);
    mine.keep();
    return 0;
  });
  REQUIRE(other_user.wait() == 0);
  struct stat st;
  REQUIRE(stat(("/dev/shm/numa_mp." + name).c_str(), &st) == 0);
  CHECK(st.st_uid == 65534);
  CHECK((st.st_mode & 0777) == 0600);
  try {
    Segment::open(name);
    FAIL("opened a segment uid 65534 created");
  } catch (const ipc::SystemError& e) {
    CHECK(e.code() == EACCES);
    CHECK_THAT(e.what(), Catch::Contains("belongs to uid 65534"));
  }
  // Not this user's: never stale for us, whoever maps it.
  for (const auto& info : Segment::list_stale(name)) CHECK(info.name != name);
  Segment::remove_stale(name);
  CHECK(shm_file_exists(name));
  CHECK(Segment::remove(name));  // root may still remove it explicitly
}

TEST_CASE("segment and object names cannot leave their directory or hide a NUL", "[segment][security]") {
  for (const std::string& bad : std::vector<std::string>{"..", "../escape", "a/../../etc", "/abs", std::string("a\0b", 3), std::string(1, '\0')}) {
    INFO(bad);
    CHECK_THROWS_AS(Segment::create(bad, 8192), ipc::InvalidArgument);
    CHECK_THROWS_AS(Segment::open(bad), ipc::InvalidArgument);
    CHECK_THROWS_AS(Segment::remove(bad), ipc::InvalidArgument);
  }
  CHECK(access("/dev/shm/escape", F_OK) != 0);
  // Object names live in the segment's own directory table, never in the file system; a NUL is refused.
  Segment seg = Segment::create(unique_name("seg"), 1 << 16);
  CHECK_THROWS_AS(seg.construct<uint64_t>(std::string("a\0b", 3), 1u), ipc::InvalidArgument);
  seg.construct<uint64_t>("../../escape", 1u);
  CHECK(seg.find<uint64_t>("../../escape") != nullptr);
  CHECK(access("/dev/shm/escape", F_OK) != 0);
  CHECK(access("/escape", F_OK) != 0);
}

TEST_CASE("a file that is not a segment is refused", "[segment]") {
  const std::string name = unique_name("seg");
  const std::string path = "/dev/shm/numa_mp." + name;
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  std::vector<char> junk(8192, 'x');
  std::fwrite(junk.data(), 1, junk.size(), f);
  std::fclose(f);
  CHECK_THROWS_WITH(Segment::open(name), Catch::Contains("not a numa_mp segment"));
  CHECK(Segment::remove(name));
}

TEST_CASE("the owner's handle unlinks the name while users that mapped it keep working", "[segment]") {
  const std::string name = unique_name("seg");
  std::optional<Segment> owner(Segment::create(name, 1 << 16));
  owner->construct<uint64_t>("v", 1u);
  Segment user = Segment::open(name);
  CHECK_FALSE(user.owns_name());
  owner.reset();
  CHECK_FALSE(shm_file_exists(name));
  CHECK_THROWS_AS(Segment::open(name), ipc::NotFound);
  uint64_t* v = user.find<uint64_t>("v");
  REQUIRE(v);
  *v = 2;  // still mapped and usable
  CHECK(*user.find<uint64_t>("v") == 2);
}

TEST_CASE("an opener's handle never unlinks, and keep() hands the name on", "[segment]") {
  const std::string name = unique_name("seg");
  {
    Segment owner = Segment::create(name, 8192);
    { Segment user = Segment::open(name); }
    CHECK(shm_file_exists(name));
    owner.keep();
  }
  CHECK(shm_file_exists(name));
  CHECK(Segment::remove(name));
  CHECK_FALSE(Segment::remove(name));
}

TEST_CASE("move-assigning over a live handle releases its segment and takes the other's", "[segment]") {
  const std::string old_name = unique_name("seg");
  const std::string new_name = unique_name("seg");
  Segment handle = Segment::create(old_name, 1 << 16);
  const ino_t old_inode = shm_inode(old_name);
  REQUIRE(maps_shm_inode(old_inode));
  Segment other = Segment::create(new_name, 1 << 16);
  void* const new_base = other.base();

  handle = std::move(other);

  // The old segment is released as its destructor would have: unmapped, and its name (owned) unlinked.
  CHECK_FALSE(maps_shm_inode(old_inode));
  CHECK_FALSE(shm_file_exists(old_name));
  // The handle now is the other's, owning its name; the other is left empty.
  CHECK(handle.name() == new_name);
  CHECK(handle.base() == new_base);
  CHECK(handle.owns_name());
  CHECK(other.base() == nullptr);
  CHECK(other.size_bytes() == 0);
  CHECK_FALSE(other.owns_name());
  CHECK(other.name().empty());
  handle.construct<uint64_t>("v", 7u);
  CHECK(open_and_check(new_name, "v", 7) == 0);

  Segment& alias = handle;  // a self-move through an alias, as generic code would do it
  handle = std::move(alias);
  CHECK(handle.base() == new_base);
  CHECK(*handle.find<uint64_t>("v") == 7);
  CHECK(open_and_check(new_name, "v", 7) == 0);

  handle = Segment::open(new_name);  // an opener's handle in place of the owner's: the owner's unlink happens
  CHECK_FALSE(handle.owns_name());
  CHECK_FALSE(shm_file_exists(new_name));
  CHECK(*handle.find<uint64_t>("v") == 7);
}

TEST_CASE("a forked copy of the owner's handle does not unlink the name", "[segment]") {
  const std::string name = unique_name("seg");
  Segment owner = Segment::create(name, 8192);
  ForkedChild child([&] {
    { Segment moved = std::move(owner); }  // runs the destructor in the child
    return 0;
  });
  REQUIRE(child.wait() == 0);
  CHECK(shm_file_exists(name));
}

TEST_CASE("the segment's policy is applied before first touch and seen by every process", "[segment][numa]") {
  const int node = ipc::numa::Topology::online_nodes().first();
  const std::string name = unique_name("seg");
  SegmentOptions opts;
  opts.policy = ipc::numa::MemoryPolicy::bind({node});
  const size_t size = 64 * 4096;
  Segment seg = Segment::create(name, size, opts);
  CHECK(seg.policy() == opts.policy);
  CHECK(ipc::numa::MemoryPolicy::of_address(seg.base()) == opts.policy);
  ForkedChild child([&] {
    Segment mine = Segment::open(name);
    if (!(mine.policy() == opts.policy)) return 2;
    if (!(ipc::numa::MemoryPolicy::of_address(mine.base()) == opts.policy)) return 3;  // shared policy
    void* block = mine.allocate(16 * 4096, 4096);
    std::memset(block, 7, 16 * 4096);
    return 0;
  });
  REQUIRE(child.wait() == 0);
  auto placement = ipc::numa::page_placement(seg.base(), size);
  CHECK(placement.pages_on(node) >= 17);  // header page + the child's 16 pages
}

TEST_CASE("an invalid policy fails before anything is created", "[segment][numa]") {
  const std::string name = unique_name("seg");
  SegmentOptions opts;
  opts.policy = ipc::numa::MemoryPolicy::interleave({ipc::numa::Topology::online_nodes().last() + 1});
  CHECK_THROWS_AS(Segment::create(name, 8192, opts), ipc::numa::PolicyError);
  CHECK_FALSE(shm_file_exists(name));
  for (const auto& info : Segment::list()) CHECK(info.name != name);
}

TEST_CASE("list shows segments with their policy and the processes using them", "[segment]") {
  const std::string name = unique_name("seg");
  Segment seg = Segment::create(name, 8192);
  bool seen = false;
  for (const auto& info : Segment::list()) {
    if (info.name != name) continue;
    seen = true;
    CHECK(info.complete);
    CHECK(info.size_bytes == 8192);
    CHECK(info.policy == "default");
    CHECK(info.creator_pid == getpid());
    CHECK(std::find(info.users.begin(), info.users.end(), getpid()) != info.users.end());
  }
  CHECK(seen);
}

TEST_CASE("remove_stale removes segments nobody uses and keeps live ones", "[segment]") {
  const std::string live = unique_name("seg");
  const std::string stale = unique_name("seg");
  Segment seg = Segment::create(live, 8192);
  // A creator that kept its segment and died: nobody maps it any more.
  ForkedChild child([&] {
    Segment::create(stale, 8192).keep();
    return 0;
  });
  REQUIRE(child.wait() == 0);
  REQUIRE(shm_file_exists(stale));
  auto removed = Segment::remove_stale(stale);
  CHECK(std::find(removed.begin(), removed.end(), "numa_mp." + stale) != removed.end());
  CHECK_FALSE(shm_file_exists(stale));
  CHECK(shm_file_exists(live));
}

TEST_CASE("a creator killed at any point never leaves a segment that hangs or corrupts the next opener",
          "[segment][kill]") {
  const std::string name = unique_name("seg");
  std::mt19937 rng(12345);
  for (int round = 0; round < 20; ++round) {
    ipc::test::PipeSignal started;
    ForkedChild creator([&] {
      started.notify();
      for (;;) {
        Segment s = Segment::create(name, 1 << 20);
        s.construct<uint64_t>("ready", 1u);
      }
      return 0;
    });
    REQUIRE(started.wait());
    spin_for(std::chrono::microseconds(rng() % 3000));  // the kill lands in a random place of create/destroy
    creator.kill(SIGKILL);
    REQUIRE(creator.wait() == -SIGKILL);
    // Whatever it left, the name is either absent or a complete segment, never one that hangs, and looking a
    // name up in it works even if the kill landed inside construct().
    try {
      Segment s = Segment::open(name);
      CHECK(s.size_bytes() == 1 << 20);
      uint64_t* ready = s.find<uint64_t>("ready");
      if (ready) CHECK(*ready == 1);
    } catch (const ipc::NotFound&) {
    }
    Segment::remove_stale(name);
    CHECK_FALSE(shm_file_exists(name));
    for (const auto& info : Segment::list()) {
      if (info.name == name) CHECK(info.owner_uid != geteuid());  // no leftovers of ours
    }
  }
  // And the name is free for a new creator.
  Segment fresh = Segment::create(name, 8192);
  CHECK(fresh.owns_name());
}

TEST_CASE("a segment larger than the free space of /dev/shm is refused at creation and leaves nothing", "[segment][resources]") {
  check_in_private_shm(8, [] {
    const uint64_t free_before = shm_free_bytes();
    SHM_EXPECT(free_before == 8u << 20, "a fresh 8 MiB tmpfs has %llu bytes free", (unsigned long long)free_before);
    const std::string too_big = exhausted_message([] { Segment::create("too-big", 16u << 20); });
    SHM_EXPECT(too_big.find("16777216 bytes") != std::string::npos && too_big.find("/dev/shm has only 8388608") !=
                                                                         std::string::npos,
               "message: '%s'", too_big.c_str());
    SHM_EXPECT(shm_files().empty() && shm_free_bytes() == free_before, "left %zu files, %llu bytes free",
               shm_files().size(), (unsigned long long)shm_free_bytes());
    // Opting out of the reservation still refuses what cannot fit now.
    SegmentOptions lazy;
    lazy.reserve = false;
    SHM_EXPECT(!exhausted_message([&] { Segment::create("too-big", 16u << 20, lazy); }).empty(), "lazy 16 MiB created");
    SHM_EXPECT(shm_files().empty(), "the lazy attempt left %zu files", shm_files().size());
    return 0;
  });
}

TEST_CASE("a segment's pages are reserved at creation: one that fits works, the next that does not is refused",
          "[segment][resources]") {
  check_in_private_shm(8, [] {
    const uint64_t free_before = shm_free_bytes();
    std::optional<Segment> first(Segment::create("first", 5u << 20));
    // Reserved, not merely sized: the free space dropped before any page was touched.
    SHM_EXPECT(shm_free_bytes() <= free_before - (5u << 20), "%llu bytes free after a reserved 5 MiB segment",
               (unsigned long long)shm_free_bytes());
    std::memset(first->allocate(4u << 20, 4096), 1, 4u << 20);  // every page usable: no SIGBUS
    const std::string second = exhausted_message([] { Segment::create("second", 5u << 20); });
    SHM_EXPECT(second.find("segment 'second' needs 5242880 bytes") != std::string::npos, "message: '%s'",
               second.c_str());
    SHM_EXPECT(shm_files() == std::vector<std::string>{"numa_mp.first"}, "%zu files left", shm_files().size());
    // Once the first is gone, its space is free again.
    first.reset();
    Segment third = Segment::create("third", 7u << 20);
    SHM_EXPECT(shm_files() == std::vector<std::string>{"numa_mp.third"}, "%zu files", shm_files().size());
    return 0;
  });
}

TEST_CASE("a segment bound to a node without the memory for it is refused at creation", "[segment][resources][numa]") {
  const auto topology = ipc::numa::Topology::discover();
  const int node = topology.with_memory().first();
  const uint64_t available = topology.node(node).memory_available_bytes;
  if (available == 0) {
    WARN("skipped: the kernel reports no memory figures per node");
    return;
  }
  // A /dev/shm large enough that only the node's memory is short (a tmpfs size is a limit, not an allocation).
  const size_t size = available + (size_t{512} << 20);
  check_in_private_shm((2 * size) >> 20, [&] {
    SegmentOptions bound;
    bound.policy = ipc::numa::MemoryPolicy::bind({node});
    // Checked before anything is allocated, reserved or not: the lazy form first, so that a missing check cannot
    // reach the reserving form (which would then allocate the node's memory for real).
    bound.reserve = false;
    const std::string lazy = exhausted_message([&] { Segment::create("bound", size, bound); });
    SHM_EXPECT(lazy.find("bound to node(s) " + std::to_string(node)) != std::string::npos &&
                   lazy.find(std::to_string(size) + " bytes") != std::string::npos,
               "message: '%s'", lazy.c_str());
    bound.reserve = true;
    SHM_EXPECT(!exhausted_message([&] { Segment::create("bound", size, bound); }).empty(), "reserved form created");
    SHM_EXPECT(shm_files().empty(), "%zu files left", shm_files().size());
    return 0;
  });
}

TEST_CASE("transparent huge pages are used or refused as unsupported", "[segment]") {
  SegmentOptions opts;
  opts.huge_pages = ipc::HugePages::kTransparent;
  const std::string name = unique_name("seg");
  try {
    Segment seg = Segment::create(name, 3 * 1024 * 1024, opts);
    CHECK(seg.size_bytes() == 4 * 1024 * 1024);  // rounded up to whole 2 MiB pages
  } catch (const ipc::Unsupported& e) {
    CHECK_THAT(e.what(), Catch::Contains("shmem_enabled"));
  }
}

TEST_CASE("processes killed while looking names up never stop a later open in any process", "[segment][kill]") {
  const std::string name = unique_name("seg");
  Segment seg = Segment::create(name, 1 << 20);
  seg.construct<uint64_t>("before", 5u);
  ipc::test::SharedMapping shared(4096);
  auto& loop = shared.make<Loop>(0);
  std::mt19937 rng(777);
  int killed_in_lookup = 0;
  for (int round = 0; round < 40; ++round) {
    ForkedChild reader([&] {
      Segment mine = Segment::open(name);
      for (;;) {
        loop.enter(1);
        const uint64_t* p = mine.find<uint64_t>("before");
        loop.next();
        if (!p || *p != 5) return 2;
      }
    });
    REQUIRE(loop.wait_until_running());
    spin_for(std::chrono::microseconds(rng() % 2000));
    reader.kill(SIGKILL);
    REQUIRE(reader.wait() == -SIGKILL);
    killed_in_lookup += loop.reset();
    INFO("round " << round << ", killed inside a lookup " << killed_in_lookup << " times");
    REQUIRE(open_and_check(name, "before", 5) == 0);
  }
  CHECK(killed_in_lookup >= 20);  // the window was hit, not skirted
}

TEST_CASE("processes killed while creating, removing and allocating never stop opens of existing objects",
          "[segment][kill]") {
  std::string name;
  std::optional<Segment> seg;
  auto fresh_segment = [&] {
    name = unique_name("seg");
    seg.emplace(Segment::create(name, 4 << 20));
    seg->construct<uint64_t>("before", 5u);
  };
  fresh_segment();
  ipc::test::SharedMapping shared(4096);
  auto& loop = shared.make<Loop>(0);
  std::mt19937 rng(4242);
  int killed_in[4] = {}, poisoned = 0;
  for (int round = 0; round < 40; ++round) {
    ForkedChild churner([&] {
      Segment mine = Segment::open(name);
      for (uint64_t i = 0;; ++i) {
        const std::string object = "churn-" + std::to_string(i % 8);
        loop.enter(1);
        mine.find_or_construct<uint64_t>(object, i);
        loop.enter(2);
        mine.destroy<uint64_t>(object);
        loop.enter(3);
        mine.deallocate(mine.allocate(64 + i % 4096, 64));
        loop.next();
      }
      return 0;
    });
    REQUIRE(loop.wait_until_running());
    spin_for(std::chrono::microseconds(rng() % 3000));
    churner.kill(SIGKILL);
    REQUIRE(churner.wait() == -SIGKILL);
    ++killed_in[loop.reset()];
    INFO("round " << round);
    REQUIRE(open_and_check(name, "before", 5) == 0);
    // Creating works too, unless the kill left the allocator itself half-updated: then it says so.
    ForkedChild creator([&] {
      Segment mine = Segment::open(name);
      try {
        mine.construct<uint64_t>("after-" + std::to_string(round), 6u);
      } catch (const ipc::StateError& e) {
        return std::strstr(e.what(), "died while allocating") ? 10 : 3;
      }
      return 0;
    });
    const auto created = creator.wait();
    REQUIRE((created == 0 || created == 10));
    if (created == 10) {  // a new segment for the next rounds, so that they test creation again
      ++poisoned;
      fresh_segment();
    }
  }
  INFO("kills in create " << killed_in[1] << ", remove " << killed_in[2] << ", allocate " << killed_in[3]
                          << "; allocator poisoned " << poisoned << " times");
  CHECK(killed_in[1] + killed_in[2] + killed_in[3] >= 20);  // the windows were hit, not skirted
}

TEST_CASE("a creator killed while initialising its block leaves the name to the next creator", "[segment][kill]") {
  const std::string name = unique_name("seg");
  Segment seg = Segment::create(name, 1 << 20);
  const size_t free_before = seg.free_bytes();
  ipc::test::SharedMapping shared(4096);
  auto& creator_killed = shared.make<std::atomic<int>>(0, 0);
  ipc::test::PipeSignal initialising, waiting;
  ForkedChild creator([&] {
    Segment mine = Segment::open(name);
    (void)mine.find_or_create_block("doomed", 4096, 64, Segment::kRawBlock, [&](void*) {
      initialising.notify();
      for (;;) pause();
    });
    return 0;
  });
  REQUIRE(initialising.wait());
  // Meanwhile an opener does not see the half-made block, and does not wait for it either.
  ForkedChild opener([&] { return Segment::open(name).find_block("doomed", Segment::kRawBlock).ptr ? 2 : 0; });
  REQUIRE(opener.wait(std::chrono::seconds(30)) == 0);
  // A second creator of the same name waits for the first, and builds the block itself once the first died.
  ForkedChild second([&] {
    Segment mine = Segment::open(name);
    waiting.notify();
    auto b = mine.find_or_create_block("doomed", 4096, 64, Segment::kRawBlock, [&](void* p) {
      // acquire: partner is the parent's release store, made before the kill.
      *static_cast<uint64_t*>(p) = creator_killed.load(std::memory_order_acquire) ? 7 : 1;
    });
    return b.found ? 3 : 0;
  });
  REQUIRE(waiting.wait());
  creator_killed.store(1, std::memory_order_release);  // release: partner is the second creator's acquire load
  creator.kill(SIGKILL);
  REQUIRE(creator.wait() == -SIGKILL);
  REQUIRE(second.wait(std::chrono::seconds(30)) == 0);
  auto b = seg.find_block("doomed", Segment::kRawBlock);
  REQUIRE(b.ptr);
  CHECK(*static_cast<uint64_t*>(b.ptr) == 7);  // built after the first creator's death, by the second
  // The dead creator's block was given back: only the second creator's block is in use.
  CHECK(seg.remove_block("doomed"));
  CHECK(seg.free_bytes() == free_before);
}

TEST_CASE("concurrent creators in several processes create each name exactly once", "[segment][stress]") {
  constexpr int kProcesses = 4, kNames = 64;
  const std::string name = unique_name("seg");
  Segment seg = Segment::create(name, 4 << 20);
  ipc::test::SharedMapping shared(4096);
  auto* inits = shared.as<std::atomic<uint32_t>>();  // per name: how many initialisers ran
  auto* offsets = shared.as<std::atomic<uint64_t>>(1024);
  std::vector<ForkedChild> creators;
  for (int p = 0; p < kProcesses; ++p) {
    creators.emplace_back([&] {
      Segment mine = Segment::open(name);
      for (int i = 0; i < kNames; ++i) {
        auto b = mine.find_or_create_block("n" + std::to_string(i), 256, 64, Segment::kRawBlock, [&](void*) {
          inits[i].fetch_add(1, std::memory_order_relaxed);  // relaxed: read after every creator exited
        });
        uint64_t expected = 0;
        // relaxed: only equality across processes matters, read after every creator exited
        if (!offsets[i].compare_exchange_strong(expected, mine.offset_of(b.ptr), std::memory_order_relaxed) &&
            expected != mine.offset_of(b.ptr)) {
          return 2;
        }
      }
      return 0;
    });
  }
  for (auto& c : creators) REQUIRE(c.wait() == 0);
  for (int i = 0; i < kNames; ++i) CHECK(inits[i].load(std::memory_order_relaxed) == 1);
}
