#!/usr/bin/env bash
# //examples:shared_counter: the lock-free counter and the ledger kept under the robust lock both add up, after
# the worker killed while holding the lock was reported to the next holder, which repaired the ledger.
source examples/test_lib.sh
run examples/shared_counter --workers 3 --increments 1000
check "exits 0" '[ "$rc" -eq 0 ]'
check "a worker was killed holding the lock" '[[ "$out" =~ killed\ worker\ [0-9]+\ while\ it\ held\ the\ lock ]]'
check "the next holder was told and repaired the ledger" \
  '[[ "$out" == *"previous owner died; repairing ledger (entries 1, total 0)"* ]]'
check "every hit and every ledger entry counted" \
  '[[ "$out" == *"hits 3000 (expected 3000); ledger entries 31, total 31 (expected 31)"* ]]'
finish
