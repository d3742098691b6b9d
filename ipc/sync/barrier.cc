#include "ipc/sync/barrier.h"

#include <sched.h>

#include <string>

#include "ipc/base/wait.h"

namespace ipc {

const char* to_string(BrokenReason r) {
  switch (r) {
    case BrokenReason::kNone: return "not broken";
    case BrokenReason::kAborted: return "aborted";
    case BrokenReason::kTimeout: return "a party timed out";
    case BrokenReason::kPartyDied: return "a party died";
    case BrokenReason::kActionFailed: return "the action failed";
  }
  return "?";
}

Barrier::Barrier(uint32_t parties) : parties_(parties) {
  if (parties == 0 || parties > kMaxParties) {
    throw InvalidArgument("Barrier: parties must be 1.." + std::to_string(kMaxParties) + ", got " +
                          std::to_string(parties));
  }
}

// A process died inside one of the short critical sections below: the state may be half-updated, so the only
// safe repair is to break the barrier (waiters learn of it; reset() starts afresh).
void Barrier::lock_state() {
  if (mu_.acquire() == Outcome::kOwnerDied) {
    break_locked(BrokenReason::kPartyDied);
    mu_.mark_consistent();
  }
}

// REQUIRES: mu_ held.
void Barrier::release_waiters(SlotState outcome) {
  for (Slot& s : slots_) {
    // Relaxed load: states change only under mu_. Release store: pairs with the waiter's acquire load of its
    // state, publishing every arrival (and the action) to it.
    if (s.state.load(std::memory_order_relaxed) == kWaiting) s.state.store(outcome, std::memory_order_release);
  }
  count_.store(0, std::memory_order_relaxed);
  // Release: pairs with the waiter's acquire load of phase_ before it re-checks its state and sleeps.
  phase_.fetch_add(1, std::memory_order_release);
  futex_wake_all(phase_);
}

// REQUIRES: mu_ held.
void Barrier::break_locked(BrokenReason reason) {
  if (broken_reason_.load(std::memory_order_relaxed) == static_cast<uint32_t>(BrokenReason::kNone)) {
    broken_reason_.store(static_cast<uint32_t>(reason), std::memory_order_relaxed);
  }
  release_waiters(kReleasedBroken);
}

// REQUIRES: mu_ held. A slot is reusable once its last waiter has read its outcome and unlocked its mutex (or
// died); try_lock tells both apart from a waiter still inside.
Barrier::Slot* Barrier::claim_slot() {
  for (Slot& s : slots_) {
    if (s.state.load(std::memory_order_relaxed) == kWaiting) continue;
    Outcome r = s.mutex.try_lock();
    if (r == Outcome::kTimeout) continue;  // its previous waiter is still on its way out
    if (r == Outcome::kOwnerDied) s.mutex.mark_consistent();  // it died after being released
    s.state.store(kWaiting, std::memory_order_relaxed);
    return &s;
  }
  return nullptr;
}

// REQUIRES: mu_ held. Frees the slot of a dead waiter and reports whether there was one.
bool Barrier::find_dead_waiter(const Slot* mine) {
  bool found = false;
  for (Slot& s : slots_) {
    if (&s == mine || s.state.load(std::memory_order_relaxed) != kWaiting) continue;
    Outcome r = s.mutex.try_lock();
    if (r == Outcome::kTimeout) continue;  // its waiter is alive
    if (r == Outcome::kOwnerDied) {
      s.mutex.mark_consistent();
      found = true;
    }
    s.mutex.unlock();
    s.state.store(kFree, std::memory_order_relaxed);
  }
  return found;
}

BarrierWait Barrier::wait_impl(const Deadline& deadline, void (*action)(void*), void* action_ctx) {
  Slot* slot = nullptr;
  uint32_t index = 0;
  for (;;) {
    lock_state();
    if (broken()) {
      mu_.release();
      return {BarrierStatus::kBroken, 0};
    }
    index = count_.load(std::memory_order_relaxed);
    if (index + 1 == parties_) {
      // A party that died waiting is counted as arrived, and no one else may look before this release: the round
      // must not pass for it (docs/sync.md). One try_lock per waiting slot's robust mutex, no system call.
      if (find_dead_waiter(nullptr)) {
        break_locked(BrokenReason::kPartyDied);
        mu_.release();
        return {BarrierStatus::kBroken, 0};
      }
      if (action) {
        try {
          action(action_ctx);
        } catch (...) {
          break_locked(BrokenReason::kActionFailed);
          mu_.release();
          throw;
        }
      }
      release_waiters(kReleasedPassed);
      mu_.release();
      return {BarrierStatus::kOk, index};
    }
    slot = claim_slot();
    if (slot) break;
    // Every slot belongs to a waiter of the previous generation still leaving: it will be gone in a moment.
    mu_.release();
    if (deadline.expired()) {
      lock_state();
      break_locked(BrokenReason::kTimeout);
      mu_.release();
      return {BarrierStatus::kTimeout, 0};
    }
    sched_yield();
  }
  count_.store(index + 1, std::memory_order_relaxed);
  uint32_t phase = phase_.load(std::memory_order_relaxed);  // under mu_: no release can slip in before our read
  mu_.release();

  BarrierStatus result;
  for (;;) {
    uint32_t state = slot->state.load(std::memory_order_acquire);  // pairs with release_waiters' store
    if (state != kWaiting) {
      result = state == kReleasedPassed ? BarrierStatus::kOk : BarrierStatus::kBroken;
      break;
    }
    if (futex_wait(phase_, phase, detail::sleep_slice(deadline, kLivenessCheckInterval)) ==
        FutexWaitResult::kTimeout) {
      lock_state();
      if (slot->state.load(std::memory_order_relaxed) == kWaiting) {
        if (deadline.expired()) {
          break_locked(BrokenReason::kTimeout);
          mu_.release();
          result = BarrierStatus::kTimeout;
          break;
        }
        if (find_dead_waiter(slot)) break_locked(BrokenReason::kPartyDied);
      }
      mu_.release();
    }
    phase = phase_.load(std::memory_order_acquire);  // pairs with release_waiters' fetch_add
  }
  slot->mutex.unlock();  // the slot may now be reused (see claim_slot)
  return {result, result == BarrierStatus::kOk ? index : 0};
}

void Barrier::abort() {
  lock_state();
  break_locked(BrokenReason::kAborted);
  mu_.release();
}

void Barrier::reset() {
  lock_state();
  release_waiters(kReleasedBroken);
  broken_reason_.store(static_cast<uint32_t>(BrokenReason::kNone), std::memory_order_relaxed);
  mu_.release();
}

}  // namespace ipc
