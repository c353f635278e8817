//! Generation identifiers, as DRBD keeps them: each copy of a volume carries a *current* id (the
//! data generation it holds), a *bitmap* id (the generation both copies last shared, set while
//! the copy tracks changes its peer has not seen), and two *history* ids (older shared
//! generations). Comparing the two copies' ids when the nodes connect decides who is the sync
//! source, whether the bitmap is enough or a full sync is needed, and whether the two diverged
//! (split brain), without looking at the data.
//!
//! The rules of [`decide`] are those of DRBD's `drbd_uuid_compare`, reduced to what a
//! two-node, Primary/Secondary volume needs; each is a test below.

/// The id of a copy that holds no data generation yet (created, never synced, never promoted).
pub const JUST_CREATED: u64 = 0;

/// One copy's generation identifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GenIds {
    /// The data generation this copy holds.
    pub current: u64,
    /// The generation both copies last shared, while this copy records what its peer missed;
    /// 0 when it records nothing.
    pub bitmap: u64,
    /// Older shared generations, newest first; 0 for none.
    pub history: [u64; 2],
}

/// What the copy was doing when it last stopped, as far as it matters on the next connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CopyFlags {
    /// The node's id (from its configuration): breaks ties the same way on both nodes.
    pub node_id: u32,
    /// It was Primary and stopped without a clean demote or shutdown: writes it applied but never
    /// acknowledged may be on its disk and not on the peer's (its activity log names where).
    pub crashed_primary: bool,
}

/// Who copies to whom, and how much, when the two copies connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Same generation, nothing to copy.
    InSync,
    /// This copy is the source; only the blocks marked in either bitmap are copied.
    SourceBitmap,
    /// The peer is the source; only the marked blocks are copied.
    TargetBitmap,
    /// This copy is the source of a copy of every block.
    SourceFull,
    /// The peer is the source of a copy of every block.
    TargetFull,
    /// Both copies took writes the other has not seen since their last shared generation: never
    /// merged automatically, the admin picks the survivor.
    SplitBrain,
    /// The copies share no generation at all (another volume's data, or both created apart):
    /// never synced automatically.
    Unrelated,
}

impl Decision {
    /// The decision as the peer sees it.
    pub fn mirrored(self) -> Decision {
        match self {
            Decision::SourceBitmap => Decision::TargetBitmap,
            Decision::TargetBitmap => Decision::SourceBitmap,
            Decision::SourceFull => Decision::TargetFull,
            Decision::TargetFull => Decision::SourceFull,
            other => other,
        }
    }
}

impl GenIds {
    /// The ids of a copy created from nothing (a sparse file both nodes created alike) for the
    /// volume whose creation id is `seed`: both nodes derive the same current id, so two empty
    /// copies start in sync without a full copy.
    pub fn fresh(seed: u64) -> GenIds {
        GenIds {
            current: nonzero(seed),
            ..GenIds::default()
        }
    }

    /// The ids of a copy whose content is unknown (an existing file or device taken over): it
    /// must be synced from its peer, or forced to be the source by the admin.
    pub fn unknown() -> GenIds {
        GenIds::default()
    }

    /// The copy starts a new data generation while its peer cannot see the writes (it is
    /// Primary and the peer went away, or it is promoted without the peer): the shared
    /// generation moves to the bitmap id, unless one is already being tracked.
    pub fn new_generation(&mut self, fresh_id: u64) {
        if self.bitmap == 0 {
            self.bitmap = self.current;
        } else {
            // Already tracking since an older shared generation: the bitmap covers this one
            // too. Keep it in history: a peer may have taken it (a resync that ended on the
            // target while this side did not hear of it), and must then get a full sync.
            self.history = [self.current, self.history[0]];
        }
        self.current = nonzero(fresh_id);
    }

    /// The bitmap is clear again (a resync this copy was the source of ended): the generation it
    /// tracked becomes history.
    pub fn clear_bitmap(&mut self) {
        if self.bitmap != 0 {
            self.history = [self.bitmap, self.history[0]];
            self.bitmap = 0;
        }
    }

    /// A resync this copy was the target of ended: it now holds the source's generation.
    pub fn adopt(&mut self, source: &GenIds) {
        let mut history = [source.bitmap, source.history[0]];
        if history[0] == 0 {
            history = source.history;
        }
        *self = GenIds {
            current: source.current,
            bitmap: 0,
            history,
        };
    }

    fn in_history(&self, id: u64) -> bool {
        id != 0 && self.history.contains(&id)
    }
}

/// Never the "just created" id.
fn nonzero(id: u64) -> u64 {
    if id == JUST_CREATED {
        1
    } else {
        id
    }
}

/// Compares this copy's ids with the peer's. Symmetric: `decide(a, b) ==
/// decide(b, a).mirrored()` for every pair.
pub fn decide(me: &GenIds, my_flags: CopyFlags, peer: &GenIds, peer_flags: CopyFlags) -> Decision {
    use Decision::*;
    match (me.current == JUST_CREATED, peer.current == JUST_CREATED) {
        // Two copies of unknown content (metadata created over existing data on both): they
        // connect, both Inconsistent, and nothing is copied until the admin forces one to be
        // the source (`promote --force`), as DRBD's initial sync.
        (true, true) => return InSync,
        (true, false) => return TargetFull,
        (false, true) => return SourceFull,
        (false, false) => {}
    }
    if me.current == peer.current {
        // Same generation: only unacknowledged writes of a crashed Primary can differ, and its
        // activity log, already in its bitmap, names where. Both crashed (both lost power):
        // both activity logs are in the merged bitmap and either side may be the source; the
        // lower node id is, on both nodes alike.
        return match (my_flags.crashed_primary, peer_flags.crashed_primary) {
            (false, false) => InSync,
            (true, false) => SourceBitmap,
            (false, true) => TargetBitmap,
            (true, true) if my_flags.node_id < peer_flags.node_id => SourceBitmap,
            (true, true) => TargetBitmap,
        };
    }
    if me.bitmap != 0 && me.bitmap == peer.current {
        return SourceBitmap;
    }
    if peer.bitmap != 0 && peer.bitmap == me.current {
        return TargetBitmap;
    }
    if me.bitmap != 0 && me.bitmap == peer.bitmap {
        return SplitBrain;
    }
    // The peer's current generation is one this copy moved on from (it was offline through a
    // whole resync cycle, or its bitmap was lost): all of it must be copied.
    if me.in_history(peer.current) || (me.bitmap != 0 && peer.in_history(me.bitmap)) {
        return SourceFull;
    }
    if peer.in_history(me.current) || (peer.bitmap != 0 && me.in_history(peer.bitmap)) {
        return TargetFull;
    }
    if me.history[0] != 0 && (me.history[0] == peer.history[0] || me.in_history(peer.bitmap)) {
        return SplitBrain;
    }
    Unrelated
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::*;

    const OK: CopyFlags = CopyFlags {
        node_id: 1,
        crashed_primary: false,
    };
    const CRASHED: CopyFlags = CopyFlags {
        node_id: 1,
        crashed_primary: true,
    };

    /// Decides from both sides (b is node 2) and checks they agree.
    fn both(a: &GenIds, af: CopyFlags, b: &GenIds, bf: CopyFlags) -> Decision {
        let bf = CopyFlags { node_id: 2, ..bf };
        let d = decide(a, af, b, bf);
        assert_eq!(decide(b, bf, a, af), d.mirrored(), "{a:?} {b:?}");
        d
    }

    #[test]
    fn two_fresh_copies_of_one_volume_are_in_sync() {
        assert_eq!(both(&GenIds::fresh(77), OK, &GenIds::fresh(77), OK), InSync);
        assert_eq!(GenIds::fresh(0).current, 1, "never the just-created id");
    }

    #[test]
    fn an_unknown_copy_gets_everything_from_one_with_data() {
        assert_eq!(
            both(&GenIds::unknown(), OK, &GenIds::fresh(9), OK),
            TargetFull
        );
        assert_eq!(
            both(&GenIds::unknown(), OK, &GenIds::unknown(), OK),
            InSync,
            "two unknown copies connect and wait for the admin's choice"
        );
    }

    #[test]
    fn primary_writing_alone_becomes_the_bitmap_source() {
        let mut p = GenIds::fresh(10);
        let s = p;
        p.new_generation(20);
        assert_eq!(p.bitmap, 10);
        assert_eq!(both(&p, OK, &s, OK), SourceBitmap);
        // A second outage before the resync keeps tracking from the same shared generation.
        p.new_generation(30);
        assert_eq!(p.bitmap, 10);
        assert_eq!(both(&p, OK, &s, OK), SourceBitmap);
    }

    #[test]
    fn a_target_that_adopted_unheard_gets_a_full_sync_not_a_stale_source_role() {
        // p resyncs s; s adopts p's generation 20, but p never hears the resync ended, and
        // goes on alone.
        let mut p = GenIds::fresh(10);
        let mut s = p;
        p.new_generation(20);
        s.adopt(&p);
        p.new_generation(30);
        assert_eq!(p.bitmap, 10);
        assert_eq!(p.history[0], 20);
        assert_eq!(both(&p, OK, &s, OK), SourceFull);
    }

    #[test]
    fn after_a_resync_both_hold_the_same_generation() {
        let mut p = GenIds::fresh(10);
        let mut s = p;
        p.new_generation(20);
        s.adopt(&p);
        p.clear_bitmap();
        assert_eq!(p, s);
        assert_eq!(p.history[0], 10);
        assert_eq!(both(&p, OK, &s, OK), InSync);
    }

    #[test]
    fn an_interrupted_resync_resumes_as_bitmap_sync() {
        let mut p = GenIds::fresh(10);
        let s = p;
        p.new_generation(20);
        // The target did not adopt (the link broke mid-resync): the same relation holds.
        assert_eq!(both(&p, OK, &s, OK), SourceBitmap);
    }

    #[test]
    fn both_promoted_apart_is_split_brain() {
        let mut a = GenIds::fresh(10);
        let mut b = a;
        a.new_generation(20);
        b.new_generation(30);
        assert_eq!(both(&a, OK, &b, OK), SplitBrain);
    }

    #[test]
    fn split_brain_after_an_earlier_resync_is_still_split_brain() {
        let mut a = GenIds::fresh(10);
        let mut b = a;
        a.new_generation(20);
        b.adopt(&a);
        a.clear_bitmap();
        a.new_generation(40);
        b.new_generation(50);
        assert_eq!(both(&a, OK, &b, OK), SplitBrain);
    }

    #[test]
    fn a_copy_that_missed_a_whole_cycle_needs_a_full_sync() {
        // a and b in sync at 10; c (an old copy) was at 10 too but is away through two cycles.
        let mut a = GenIds::fresh(10);
        let mut b = a;
        let c = a;
        a.new_generation(20);
        b.adopt(&a);
        a.clear_bitmap();
        a.new_generation(30);
        b.adopt(&a);
        a.clear_bitmap();
        // a's history holds 20 and 10; c's current 10 is in it: c is behind, but a's bitmap
        // no longer says what changed since 10.
        assert_eq!(both(&a, OK, &c, OK), SourceFull);
        assert_eq!(both(&b, OK, &c, OK), SourceFull);
    }

    #[test]
    fn a_crashed_primary_is_the_source_of_its_activity_log() {
        let a = GenIds::fresh(10);
        let b = a;
        assert_eq!(both(&a, CRASHED, &b, OK), SourceBitmap);
        assert_eq!(both(&a, OK, &b, OK), InSync);
        assert_eq!(
            both(&a, CRASHED, &b, CRASHED),
            SourceBitmap,
            "node 1 wins the tie"
        );
    }

    #[test]
    fn the_survivor_promoted_after_the_primary_died_is_the_source() {
        // a was Primary and crashed; b was promoted and wrote alone.
        let a = GenIds::fresh(10);
        let mut b = a;
        b.new_generation(20);
        assert_eq!(both(&a, CRASHED, &b, OK), TargetBitmap);
    }

    #[test]
    fn unrelated_copies_are_never_synced() {
        let a = GenIds {
            current: 5,
            bitmap: 6,
            history: [7, 8],
        };
        let b = GenIds {
            current: 15,
            bitmap: 16,
            history: [17, 18],
        };
        assert_eq!(both(&a, OK, &b, OK), Unrelated);
    }

    #[test]
    fn decide_is_symmetric_over_many_histories() {
        // Small random walks of two copies from one shared start: every pair of states they
        // pass through must be decided the same way from both sides.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let mut a = GenIds::fresh(1);
            let mut b = a;
            for _ in 0..6 {
                match next() % 5 {
                    0 => a.new_generation(next()),
                    1 => b.new_generation(next()),
                    2 => {
                        b.adopt(&a);
                        a.clear_bitmap();
                    }
                    3 => {
                        a.adopt(&b);
                        b.clear_bitmap();
                    }
                    _ => {}
                }
                let fa = CopyFlags {
                    node_id: 1,
                    crashed_primary: next().is_multiple_of(4),
                };
                let fb = CopyFlags {
                    node_id: 2,
                    crashed_primary: next().is_multiple_of(4),
                };
                both(&a, fa, &b, fb);
            }
        }
    }
}
