//! Process-wide interned ids: one shared `Arc<str>` per distinct user id, whichever replica or
//! memory view holds it. In `orgplane all` identity, workspace and billing-access each keep the
//! role replica of the same organizations, and workspace its direct roles, so without interning
//! every member's id would be allocated three or four times; with it, each view pays a pointer
//! per entry and the process one allocation per distinct id.
//!
//! Ids nobody holds any more (members removed, replicas reloaded) are dropped by a sweep that
//! runs once the set grew by as many insertions as it held after the previous sweep (so its cost
//! is O(1) per insertion; per shard), and by [`sweep`].

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

struct Interner {
    ids: HashSet<Arc<str>>,
    inserted: usize,
    sweep_at: usize,
}

/// Shards of the set, each behind its own lock: the replicas of a process load at once (at a
/// million members one lock was contended for about a tenth of the start-up).
const SHARDS: usize = 16;

static IDS: LazyLock<[Mutex<Interner>; SHARDS]> = LazyLock::new(|| {
    std::array::from_fn(|_| {
        Mutex::new(Interner {
            ids: HashSet::new(),
            inserted: 0,
            sweep_at: 1024,
        })
    })
});

/// The shard of `id` (FNV-1a of its bytes).
fn lock(id: &str) -> std::sync::MutexGuard<'static, Interner> {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    IDS[(hash % SHARDS as u64) as usize]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

impl Interner {
    fn sweep(&mut self) {
        self.ids.retain(|id| Arc::strong_count(id) > 1);
        self.ids.shrink_to_fit();
        self.inserted = 0;
        self.sweep_at = self.ids.len().max(1024);
    }
}

/// The shared copy of `id`.
pub fn intern(id: &str) -> Arc<str> {
    let mut interner = lock(id);
    if let Some(found) = interner.ids.get(id) {
        return found.clone();
    }
    let new: Arc<str> = Arc::from(id);
    interner.ids.insert(new.clone());
    interner.inserted += 1;
    if interner.inserted >= interner.sweep_at {
        interner.sweep();
    }
    new
}

/// Drops the ids no view holds any more (after a view was replaced as a whole).
pub fn sweep() {
    for shard in IDS.iter() {
        shard.lock().unwrap_or_else(|e| e.into_inner()).sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_allocation_per_distinct_id_released_once_nobody_holds_it() {
        let a = intern("user_intern_test_a");
        let b = intern("user_intern_test_a");
        assert!(Arc::ptr_eq(&a, &b), "the same id shares one allocation");
        assert!(!Arc::ptr_eq(&a, &intern("user_intern_test_b")));
        let weak = Arc::downgrade(&a);
        sweep();
        assert!(weak.upgrade().is_some(), "held ids survive a sweep");
        drop((a, b));
        sweep();
        assert!(weak.upgrade().is_none(), "an id nobody holds is dropped");
    }
}
