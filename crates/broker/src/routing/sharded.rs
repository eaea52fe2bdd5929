//! A map split into shards behind `Arc`s, so that a changed copy costs one shard, not the whole
//! map: a routing snapshot is copied on every topology change, and a vhost may hold a hundred
//! thousand queues. A lookup hashes the key once more to pick the shard, then reads a plain
//! hash map: publishers pay almost nothing for it.

use foldhash::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use warren_amqp::ShortStr;

const SHARDS: usize = 256;

#[derive(Debug, Clone)]
pub struct Sharded<V> {
    shards: Vec<Arc<HashMap<ShortStr, V>>>,
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::default())).collect(),
        }
    }
}

fn shard(key: &ShortStr) -> usize {
    // A fixed seed: the same key always lands in the same shard of every copy.
    (foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key) % SHARDS as u64) as usize
}

impl<V: Clone> Sharded<V> {
    pub fn get(&self, key: &ShortStr) -> Option<&V> {
        self.shards[shard(key)].get(key)
    }

    /// Changes one shard: copied first if another snapshot still shares it.
    pub fn insert(&mut self, key: ShortStr, value: V) {
        Arc::make_mut(&mut self.shards[shard(&key)]).insert(key, value);
    }

    pub fn remove(&mut self, key: &ShortStr) {
        let s = &mut self.shards[shard(key)];
        if s.contains_key(key) {
            Arc::make_mut(s).remove(key);
        }
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
}
