//! [`Places`]: the sorted `place`s of one room's WAITING tokens, as an order-statistics set
//! that is changed by deltas and shared between snapshots.
//!
//! **Why blocks.** A position is a rank (how many places are lower), asked thousands of times
//! a second, while the line changes by a few thousand joins and departures per refresh out
//! of up to a million people. A sorted `Vec` answers ranks in O(log n) but must be copied
//! whole for every new snapshot (8 MB at a million). Here the places are cut into sorted
//! blocks of at most [`MAX_BLOCK`] behind `Arc`s: a new snapshot copies only the blocks its
//! delta touches and shares the rest with the previous one, and a rank is a binary search
//! over the blocks, a prefix count and a binary search in one block. Memory stays ~8 bytes
//! per person (plus ~1/[`BLOCK`] of overhead), and a refresh costs O(changes · [`BLOCK`] +
//! blocks), not O(line).
use std::sync::Arc;

/// Target size of a block after a split.
pub const BLOCK: usize = 512;
/// Largest block: a block that grows beyond it is split into blocks of [`BLOCK`].
pub const MAX_BLOCK: usize = 2 * BLOCK;

/// A set of places (`i64`), sorted, with ranks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Places {
    /// Non-empty sorted blocks; every place of block `i` is below every place of `i + 1`.
    blocks: Vec<Arc<[i64]>>,
    /// `starts[i]`: places in the blocks before `i`; one more entry holds the total.
    starts: Vec<usize>,
}

impl Places {
    /// How many places are in the set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest place, if any.
    #[must_use]
    pub fn last(&self) -> Option<i64> {
        self.blocks.last().and_then(|b| b.last().copied())
    }

    /// Every place, ascending.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.blocks.iter().flat_map(|b| b.iter().copied())
    }

    /// How many places are below `place`.
    #[must_use]
    pub fn rank(&self, place: i64) -> usize {
        let i = self.block_of(place);
        self.starts.get(i).copied().unwrap_or(0) + self.blocks.get(i).map_or(0, |b| b.partition_point(|&p| p < place))
    }

    /// Whether `place` is in the set.
    #[must_use]
    pub fn contains(&self, place: i64) -> bool {
        self.blocks.get(self.block_of(place)).is_some_and(|b| b.binary_search(&place).is_ok())
    }

    /// The set with `joined` added and `left` removed (each in any order), sharing every
    /// block neither touches with `self`; and how many of `left` were in the set (the
    /// departures). A place in both is treated as joined and then left.
    #[must_use]
    pub fn apply(&self, mut joined: Vec<i64>, mut left: Vec<i64>) -> (Self, usize) {
        joined.sort_unstable();
        joined.dedup();
        left.sort_unstable();
        left.dedup();
        let departed = left.iter().filter(|&&p| self.contains(p)).count();
        if joined.is_empty() && left.is_empty() {
            return (self.clone(), 0);
        }
        let mut blocks: Vec<Arc<[i64]>> = Vec::with_capacity(self.blocks.len() + joined.len() / BLOCK + 1);
        let (mut j, mut l) = (0, 0);
        let n = self.blocks.len();
        for (i, block) in self.blocks.iter().enumerate() {
            // Block `i` takes the joins below the next block's first place (the last block
            // takes every join above it; the first, every join below it).
            let upper = self.blocks.get(i + 1).map_or(i64::MAX, |b| b[0]);
            let j_end = if i + 1 == n { joined.len() } else { j + joined[j..].partition_point(|&p| p < upper) };
            let l_end = if i + 1 == n { left.len() } else { l + left[l..].partition_point(|&p| p < upper) };
            if j == j_end && l == l_end {
                blocks.push(block.clone());
            } else {
                push_merged(&mut blocks, block, &joined[j..j_end], &left[l..l_end]);
            }
            (j, l) = (j_end, l_end);
        }
        if n == 0 {
            push_merged(&mut blocks, &[], &joined, &left);
        }
        let mut set = Self { blocks, starts: Vec::new() };
        set.count();
        (set, departed)
    }

    /// The index of the block where `place` is or would be.
    fn block_of(&self, place: i64) -> usize {
        self.blocks
            .partition_point(|b| b.last().is_some_and(|&last| last < place))
            .min(self.blocks.len().saturating_sub(1))
    }

    fn count(&mut self) {
        self.starts.clear();
        self.starts.reserve(self.blocks.len() + 1);
        let mut total = 0;
        for b in &self.blocks {
            self.starts.push(total);
            total += b.len();
        }
        self.starts.push(total);
    }
}

/// Pushes `block` with `joined` merged in and `left` taken out (both sorted), as blocks of at
/// most [`MAX_BLOCK`]; nothing when it ends empty. A short result is merged into the block
/// before it when both fit in one, so removals from the head or middle of the line do not
/// leave a trail of tiny blocks.
fn push_merged(blocks: &mut Vec<Arc<[i64]>>, block: &[i64], joined: &[i64], left: &[i64]) {
    let mut merged = Vec::with_capacity(block.len() + joined.len());
    let (mut a, mut b) = (block.iter().peekable(), joined.iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(&&x), Some(&&y)) if x < y => a.next(),
            (Some(&&x), Some(&&y)) if x == y => {
                b.next();
                a.next()
            }
            (Some(_), Some(_)) | (None, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => break,
        };
        if let Some(&p) = next
            && left.binary_search(&p).is_err()
        {
            merged.push(p);
        }
    }
    if merged.is_empty() {
        return;
    }
    if merged.len() < BLOCK / 2
        && let Some(prev) = blocks.last_mut().filter(|prev| prev.len() + merged.len() <= MAX_BLOCK)
    {
        let mut both = Vec::with_capacity(prev.len() + merged.len());
        both.extend_from_slice(prev);
        both.extend_from_slice(&merged);
        *prev = Arc::from(both);
        return;
    }
    if merged.len() <= MAX_BLOCK {
        blocks.push(Arc::from(merged));
    } else {
        blocks.extend(merged.chunks(BLOCK).map(Arc::from));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn check(set: &Places, model: &BTreeSet<i64>, probes: &[i64]) {
        assert_eq!(set.len(), model.len());
        assert_eq!(set.last(), model.last().copied());
        for (i, &p) in model.iter().enumerate() {
            assert_eq!(set.rank(p), i, "rank of {p}");
            assert!(set.contains(p), "contains {p}");
        }
        for &p in probes {
            assert_eq!(set.rank(p), model.range(..p).count(), "rank of {p}");
            assert_eq!(set.contains(p), model.contains(&p), "contains {p}");
        }
        assert!(set.iter().eq(model.iter().copied()));
        for w in set.blocks.windows(2) {
            assert!(w[0].last() < w[1].first(), "blocks overlap");
        }
        assert!(set.blocks.iter().all(|b| !b.is_empty() && b.len() <= MAX_BLOCK && b.is_sorted()));
    }

    proptest! {
        /// Whatever joins and departures arrive, in whatever order and size, ranks agree with
        /// a plain sorted set.
        #[test]
        fn ranks_agree_with_a_sorted_set(
            start in proptest::collection::vec(-5_000i64..5_000, 0..3_000),
            steps in proptest::collection::vec(
                (proptest::collection::vec(-6_000i64..6_000, 0..1_500),
                 proptest::collection::vec(-6_000i64..6_000, 0..1_500)), 1..6),
            probes in proptest::collection::vec(-7_000i64..7_000, 0..50),
        ) {
            let mut set = Places::default().apply(start.clone(), Vec::new()).0;
            let mut model: BTreeSet<i64> = start.into_iter().collect();
            check(&set, &model, &probes);
            for (joined, left) in steps {
                let gone: BTreeSet<i64> = left.iter().copied().collect();
                let expected_departed = gone.iter().filter(|p| model.contains(p)).count();
                let (next, departed) = set.apply(joined.clone(), left);
                model.extend(joined);
                model.retain(|p| !gone.contains(p));
                prop_assert_eq!(departed, expected_departed);
                check(&next, &model, &probes);
                set = next;
            }
        }
    }

    #[test]
    fn a_delta_copies_only_the_blocks_it_touches() {
        let set = Places::default().apply((1..=100_000).collect(), Vec::new()).0;
        // The head is admitted and one person joins at the end.
        let (next, departed) = set.apply(vec![100_001], (1..=10).collect());
        assert_eq!(departed, 10);
        assert_eq!((next.len(), next.rank(100_001), next.rank(11)), (99_991, 99_990, 0));
        let shared = next.blocks.iter().filter(|b| set.blocks.iter().any(|o| Arc::ptr_eq(o, b))).count();
        assert_eq!(shared, next.blocks.len() - 2, "all but the first and last block are shared");
    }

    #[test]
    fn draining_the_head_leaves_no_tiny_blocks_behind() {
        let mut set = Places::default().apply((1..=10_000).collect(), Vec::new()).0;
        for round in 0..100 {
            let head: Vec<i64> = (round * 100 + 1..=round * 100 + 100).collect();
            set = set.apply(Vec::new(), head).0;
        }
        assert!(set.is_empty() && set.blocks.is_empty());
    }
}
