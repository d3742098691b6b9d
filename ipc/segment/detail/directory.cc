#include "ipc/segment/detail/directory.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "ipc/base/error.h"
#include "ipc/base/futex.h"
#include "ipc/base/process.h"
#include "ipc/segment/detail/robust_allocator_mutex.h"

namespace ipc::segment_detail {

namespace {

enum State : uint64_t { kEmpty = 0, kReserved = 1, kReady = 2, kRemoved = 3 };

constexpr uint64_t make_word(uint32_t generation, State state, uint32_t pid) {
  return (uint64_t{generation} << 32) | (uint64_t{state} << 24) | (pid & 0xffffffu);
}
constexpr uint32_t word_generation(uint64_t w) { return static_cast<uint32_t>(w >> 32); }
constexpr State word_state(uint64_t w) { return State((w >> 24) & 0xff); }
constexpr uint32_t word_pid(uint64_t w) { return static_cast<uint32_t>(w & 0xffffffu); }
static_assert(word_pid(make_word(7, kReserved, 4194303)) == 4194303, "every Linux pid (< 2^22) fits");
static_assert(word_state(make_word(~0u, kRemoved, 0)) == kRemoved && word_generation(make_word(~0u, kReady, 1)) == ~0u);

// How long a creator waiting for another process's reservation sleeps before checking that the reserver lives.
constexpr std::chrono::milliseconds kRecheck{20};

template <size_t N>
void pack(std::string_view s, uint64_t (&words)[N]) {
  std::memset(words, 0, sizeof words);
  std::memcpy(words, s.data(), s.size() < sizeof words ? s.size() : sizeof words - 1);
}
template <size_t N>
std::string unpack(const uint64_t (&words)[N]) {
  const char* c = reinterpret_cast<const char*>(words);
  return std::string(c, strnlen(c, sizeof words));
}
template <size_t N>
void load(const std::atomic<uint64_t> (&from)[N], uint64_t (&to)[N]) {
  // relaxed: ordered by the word's acquire load before and the acquire fence after (see read_entry).
  for (size_t i = 0; i < N; ++i) to[i] = from[i].load(std::memory_order_relaxed);
}
template <size_t N>
void store(std::atomic<uint64_t> (&to)[N], const uint64_t (&from)[N]) {
  // relaxed: published by the release fence in reserve() and the release CAS in publish().
  for (size_t i = 0; i < N; ++i) to[i].store(from[i], std::memory_order_relaxed);
}

// A consistent copy of an entry that was READY, taken without a lock.
struct Snapshot {
  uint64_t hash, offset, bytes, kind_tag;
  uint64_t name[kNameWords];
  uint64_t kind[kKindWords];

  BlockInfo record() const {
    return {unpack(name), unpack(kind), static_cast<uint32_t>(kind_tag), offset, bytes};
  }
};

// The fields of `e`. relaxed: callers order the copy (the mutex, or read_entry's seqlock).
Snapshot copy(const DirectoryEntry& e) {
  Snapshot out;
  out.hash = e.hash.load(std::memory_order_relaxed);
  out.offset = e.offset.load(std::memory_order_relaxed);
  out.bytes = e.bytes.load(std::memory_order_relaxed);
  out.kind_tag = e.kind_tag.load(std::memory_order_relaxed);
  load(e.name, out.name);
  load(e.kind, out.kind);
  return out;
}

enum class Read { kEmpty, kOther, kReady, kChanged };

// Seqlock read of entry `e`: kReady with `out` filled when it was READY throughout the copy.
Read read_entry(const DirectoryEntry& e, Snapshot& out) {
  // acquire: partner is publish()'s release CAS; the fields and the block published with this word are visible.
  const uint64_t w = e.word.load(std::memory_order_acquire);
  if (word_state(w) == kEmpty) return Read::kEmpty;
  if (word_state(w) != kReady) return Read::kOther;
  out = copy(e);
  // acquire: partner is the release fence in reserve() after it marked a reused entry RESERVED: had any field we
  // copied been rewritten for a new name, the word read below is no longer `w`.
  std::atomic_thread_fence(std::memory_order_acquire);
  return e.word.load(std::memory_order_relaxed) == w ? Read::kReady : Read::kChanged;  // relaxed: the fence orders it
}

// The writers' lock. A holder that died is no reason to stop: every store made under it leaves the table
// consistent (see the header), so EOWNERDEAD is repaired at once, never reported.
class WriterLock {
 public:
  explicit WriterLock(pthread_mutex_t& mutex) : mutex_(mutex) {
    int r = pthread_mutex_lock(&mutex_);
    if (r == EOWNERDEAD) r = pthread_mutex_consistent(&mutex_);
    if (r != 0) throw SystemError(r, "lock the directory of a segment");
  }
  ~WriterLock() { pthread_mutex_unlock(&mutex_); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  pthread_mutex_t& mutex_;
};

}  // namespace

// A name as the table stores it.
struct Directory::Key {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a
  uint64_t name[kNameWords];

  explicit Key(std::string_view s) {
    for (unsigned char c : s) hash = (hash ^ c) * 1099511628211ull;
    pack(s, name);
  }
  bool matches(const Snapshot& snap) const {
    return snap.hash == hash && std::memcmp(snap.name, name, sizeof name) == 0;
  }
};

void Directory::init(void* at, uint32_t capacity) {
  auto* h = new (at) DirectoryHeader{};
  init_robust_mutex(h->writers, false, "the directory of a segment");
  h->capacity = capacity;
  // All EMPTY. The segment is published to other processes later (link(2) of its file).
  auto* entries = reinterpret_cast<DirectoryEntry*>(h + 1);
  for (uint32_t i = 0; i < capacity; ++i) new (&entries[i]) DirectoryEntry{};
}

Directory::Directory(void* at)
    : header_(static_cast<DirectoryHeader*>(at)),
      entries_(reinterpret_cast<DirectoryEntry*>(header_ + 1)),
      capacity_(header_->capacity) {}

std::optional<BlockInfo> Directory::find(std::string_view name) const {
  const Key key(name);
  uint32_t i = home(key.hash);
  for (uint32_t seen = 0; seen < capacity_;) {
    Snapshot snap;
    switch (read_entry(entry(i), snap)) {
      case Read::kEmpty:
        return std::nullopt;  // the end of the probe chain
      case Read::kChanged:
        continue;  // reused while we read it: read it again
      case Read::kReady:
        if (key.matches(snap)) return snap.record();
        break;
      case Read::kOther:
        break;
    }
    ++seen;
    i = next(i);
  }
  return std::nullopt;
}

std::vector<BlockInfo> Directory::list() const {
  std::vector<BlockInfo> out;
  for (uint32_t i = 0; i < capacity_;) {
    Snapshot snap;
    const Read r = read_entry(entry(i), snap);
    if (r == Read::kChanged) continue;
    if (r == Read::kReady) out.push_back(snap.record());
    ++i;
  }
  return out;
}

Directory::Reservation Directory::reserve(std::string_view name, const BlockKind& kind,
                                          std::vector<uint64_t>& orphans) {
  const Key key(name);
  const uint32_t me = static_cast<uint32_t>(getpid());
  for (;;) {
    // acquire: partner is end_reservation()'s release increment. Read before looking, so that a reservation that
    // ends after our look has changed the word and the futex_wait below returns at once.
    const uint32_t changes = header_->changes.load(std::memory_order_acquire);
    {
      WriterLock lock(header_->writers);
      std::optional<uint32_t> free_entry;
      bool wait = false;
      uint32_t i = home(key.hash);
      for (uint32_t seen = 0; seen < capacity_ && !wait; ++seen, i = next(i)) {
        DirectoryEntry& e = entry(i);
        // acquire: partner is publish()'s release CAS (READY fields and offset are visible).
        uint64_t w = e.word.load(std::memory_order_acquire);
        if (word_state(w) == kReserved && process_dead(word_pid(w))) {
          // acquire: partner is set_block()'s release store by the creator that died.
          const uint64_t offset = e.offset.load(std::memory_order_acquire);
          // relaxed: only writers (under the mutex) and the dead reserver ever change a RESERVED word.
          const uint64_t removed = make_word(word_generation(w), kRemoved, 0);
          if (e.word.compare_exchange_strong(w, removed, std::memory_order_relaxed)) {
            if (offset != 0) orphans.push_back(offset);
            w = removed;
          }
        }
        const State s = word_state(w);
        if (s == kEmpty || s == kRemoved) {
          if (!free_entry) free_entry = i;
          if (s == kEmpty) break;  // the end of the probe chain: the name is nowhere further
          continue;
        }
        // Under the mutex a RESERVED or READY entry's name is stable: it was written under the mutex.
        const Snapshot snap = copy(e);
        if (!key.matches(snap)) continue;
        if (s == kReady) return {snap.record(), 0, 0};
        wait = true;  // a live process is creating this very name
      }
      if (!wait) {
        if (!free_entry) {
          throw SegmentFull("the segment's directory has no room for another name (" + std::to_string(capacity_) +
                            " names; see SegmentOptions::max_names)");
        }
        DirectoryEntry& e = entry(*free_entry);
        // relaxed: under the mutex, an EMPTY or REMOVED word changes only under the mutex.
        const uint64_t w = make_word(word_generation(e.word.load(std::memory_order_relaxed)) + 1, kReserved, me);
        e.word.store(w, std::memory_order_relaxed);
        // release: partner is the acquire fence in read_entry(): a reader that copies any field written below
        // also sees that the word is no longer the READY word it started from.
        std::atomic_thread_fence(std::memory_order_release);
        uint64_t kind_words[kKindWords];
        pack(kind.name, kind_words);
        // relaxed: published by the release CAS in publish().
        e.hash.store(key.hash, std::memory_order_relaxed);
        e.offset.store(0, std::memory_order_relaxed);
        e.bytes.store(0, std::memory_order_relaxed);
        e.kind_tag.store(kind.tag, std::memory_order_relaxed);
        store(e.name, key.name);
        store(e.kind, kind_words);
        return {std::nullopt, *free_entry, w};
      }
    }
    futex_wait(header_->changes, changes, Deadline::after(kRecheck));
  }
}

void Directory::set_block(const Reservation& r, uint64_t offset, uint64_t bytes) {
  DirectoryEntry& e = entry(r.index);
  e.bytes.store(bytes, std::memory_order_relaxed);  // relaxed: published by the release CAS in publish()
  // release: partner is the acquire load in reserve() that reclaims the entry should we die before publishing.
  e.offset.store(offset, std::memory_order_release);
}

void Directory::publish(const Reservation& r) {
  uint64_t expected = r.word;
  // release: partner is the acquire load of the word in read_entry() and reserve(): the entry's fields and
  // everything the creator wrote into the block happen before a finder sees READY.
  if (!entry(r.index).word.compare_exchange_strong(expected, make_word(word_generation(r.word), kReady, 0),
                                                    std::memory_order_release, std::memory_order_relaxed)) {
    throw StateError("the reservation of a name in this segment was reclaimed while its creator was alive");
  }
  end_reservation();
}

bool Directory::withdraw(const Reservation& r) {
  bool ours;
  {
    WriterLock lock(header_->writers);
    uint64_t expected = r.word;
    // relaxed: nothing is published by giving a name up.
    ours = entry(r.index).word.compare_exchange_strong(expected, make_word(word_generation(r.word), kRemoved, 0),
                                                       std::memory_order_relaxed);
    if (ours) trim(r.index);
  }
  end_reservation();
  return ours;
}

std::optional<uint64_t> Directory::remove(std::string_view name) {
  const Key key(name);
  WriterLock lock(header_->writers);
  uint32_t i = home(key.hash);
  for (uint32_t seen = 0; seen < capacity_; ++seen, i = next(i)) {
    DirectoryEntry& e = entry(i);
    // acquire: partner is publish()'s release CAS.
    const uint64_t w = e.word.load(std::memory_order_acquire);
    if (word_state(w) == kEmpty) break;
    if (word_state(w) != kReady) continue;
    const Snapshot snap = copy(e);  // stable: a READY entry changes only under the mutex
    if (!key.matches(snap)) continue;
    // relaxed: a READY word changes only under the mutex; nothing is published by removing.
    e.word.store(make_word(word_generation(w), kRemoved, 0), std::memory_order_relaxed);
    trim(i);
    return snap.offset;
  }
  return std::nullopt;
}

void Directory::trim(uint32_t i) {
  // relaxed throughout: under the mutex. Readers that race see either state; both end their chains correctly.
  if (word_state(entry(next(i)).word.load(std::memory_order_relaxed)) != kEmpty) return;
  for (uint32_t n = 0; n < capacity_; ++n, i = prev(i)) {
    const uint64_t w = entry(i).word.load(std::memory_order_relaxed);
    if (word_state(w) != kRemoved) return;
    entry(i).word.store(make_word(word_generation(w), kEmpty, 0), std::memory_order_relaxed);
  }
}

void Directory::end_reservation() {
  // release: partner is the acquire load in reserve() before it looks; a waiter either sees the new state of the
  // entry or a changed futex word.
  header_->changes.fetch_add(1, std::memory_order_release);
  futex_wake_all(header_->changes);
}

}  // namespace ipc::segment_detail
