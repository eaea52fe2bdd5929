//! A map split into shards behind `Arc`s, so that a changed copy costs one shard, not the whole
//! map: a routing snapshot is copied on every topology change, and a vhost may hold a hundred
//! thousand queues. The number of shards grows with the map (doubling, so each entry is moved
//! a bounded number of times), which keeps a shard small however large the map gets. A lookup
//! hashes the key once more to pick the shard, then reads a plain hash map: publishers pay
//! almost nothing for it.

use foldhash::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use warren_amqp::ShortStr;

const SHARDS: usize = 256;
/// Entries per shard on average beyond which the shards double.
const PER_SHARD: usize = 64;

#[derive(Debug, Clone)]
pub struct Sharded<V> {
    shards: Vec<Arc<HashMap<ShortStr, V>>>,
    len: usize,
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::default())).collect(),
            len: 0,
        }
    }
}

fn shard(key: &ShortStr, shards: usize) -> usize {
    // A fixed seed: the same key always lands in the same shard of every copy.
    (foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key) % shards as u64) as usize
}

impl<V: Clone> Sharded<V> {
    pub fn get(&self, key: &ShortStr) -> Option<&V> {
        self.shards[shard(key, self.shards.len())].get(key)
    }

    /// Changes one shard: copied first if another snapshot still shares it.
    pub fn insert(&mut self, key: ShortStr, value: V) {
        let at = shard(&key, self.shards.len());
        if Arc::make_mut(&mut self.shards[at])
            .insert(key, value)
            .is_none()
        {
            self.len += 1;
            if self.len > self.shards.len() * PER_SHARD {
                self.grow();
            }
        }
    }

    pub fn remove(&mut self, key: &ShortStr) {
        let at = shard(key, self.shards.len());
        let s = &mut self.shards[at];
        if s.contains_key(key) {
            Arc::make_mut(s).remove(key);
            self.len -= 1;
        }
    }

    /// Twice the shards, every entry moved to its new one.
    fn grow(&mut self) {
        let n = self.shards.len() * 2;
        let mut shards: Vec<HashMap<ShortStr, V>> = (0..n).map(|_| HashMap::default()).collect();
        for s in &self.shards {
            for (k, v) in s.iter() {
                shards[shard(k, n)].insert(k.clone(), v.clone());
            }
        }
        self.shards = shards.into_iter().map(Arc::new).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_shares_every_shard_but_the_one_changed() {
        let mut a: Sharded<u32> = Sharded::default();
        for i in 0..1000 {
            a.insert(ShortStr::from(format!("q{i}")), i);
        }
        let mut b = a.clone();
        b.insert("new".into(), 7);
        b.remove(&"q1".into());
        assert_eq!(a.get(&"new".into()), None, "the original is unchanged");
        assert_eq!(a.get(&"q1".into()), Some(&1));
        assert_eq!(b.get(&"new".into()), Some(&7));
        assert_eq!(b.get(&"q1".into()), None);
        assert_eq!(b.get(&"q2".into()), Some(&2));
        let shared = a
            .shards
            .iter()
            .zip(&b.shards)
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(
            shared >= SHARDS - 2,
            "only the changed shards were copied: {shared} shared"
        );
    }

    #[test]
    fn shards_multiply_as_the_map_grows_and_nothing_is_lost() {
        let mut m: Sharded<u32> = Sharded::default();
        let n = SHARDS * PER_SHARD * 4 + 7;
        for i in 0..n {
            m.insert(ShortStr::from(format!("k{i}")), i as u32);
        }
        assert!(m.shards.len() >= SHARDS * 4, "{} shards", m.shards.len());
        let biggest = m.shards.iter().map(|s| s.len()).max().unwrap_or(0);
        assert!(biggest <= PER_SHARD * 3, "shards stay small: {biggest}");
        for i in 0..n {
            assert_eq!(m.get(&ShortStr::from(format!("k{i}"))), Some(&(i as u32)));
        }
        m.insert("k0".into(), 99);
        m.remove(&"k1".into());
        assert_eq!(m.len, n - 1);
        assert_eq!(m.get(&"k0".into()), Some(&99));
    }
}
