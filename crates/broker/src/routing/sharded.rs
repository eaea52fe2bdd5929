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
/// Shards per group. The shards sit in groups behind `Arc`s too: a copy of the map copies
/// the list of groups and a change copies one group, a few dozen pointers each, where one
/// flat list would cost a pointer per shard, thousands at a hundred thousand queues.
const GROUP: usize = 32;

type Shard<V> = Arc<HashMap<ShortStr, V>>;

#[derive(Debug, Clone)]
pub struct Sharded<V> {
    groups: Vec<Arc<Vec<Shard<V>>>>,
    len: usize,
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Sharded {
            groups: grouped((0..SHARDS).map(|_| HashMap::default())),
            len: 0,
        }
    }
}

fn grouped<V>(shards: impl Iterator<Item = HashMap<ShortStr, V>>) -> Vec<Arc<Vec<Shard<V>>>> {
    let shards: Vec<Shard<V>> = shards.map(Arc::new).collect();
    shards.chunks(GROUP).map(|g| Arc::new(g.to_vec())).collect()
}

/// Where `key` lives among `shards` shards: its group and its place in it.
fn shard(key: &ShortStr, shards: usize) -> (usize, usize) {
    // A fixed seed: the same key always lands in the same shard of every copy.
    let at = (foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key) % shards as u64) as usize;
    (at / GROUP, at % GROUP)
}

impl<V: Clone> Sharded<V> {
    fn shards(&self) -> usize {
        self.groups.len() * GROUP
    }

    pub fn get(&self, key: &ShortStr) -> Option<&V> {
        let (g, at) = shard(key, self.shards());
        self.groups[g][at].get(key)
    }

    /// Changes one shard: it and its group are copied first if another snapshot still
    /// shares them.
    pub fn insert(&mut self, key: ShortStr, value: V) {
        let (g, at) = shard(&key, self.shards());
        let group = Arc::make_mut(&mut self.groups[g]);
        if Arc::make_mut(&mut group[at]).insert(key, value).is_none() {
            self.len += 1;
            if self.len > self.shards() * PER_SHARD {
                self.grow();
            }
        }
    }

    pub fn remove(&mut self, key: &ShortStr) {
        let (g, at) = shard(key, self.shards());
        if self.groups[g][at].contains_key(key) {
            let group = Arc::make_mut(&mut self.groups[g]);
            Arc::make_mut(&mut group[at]).remove(key);
            self.len -= 1;
        }
    }

    /// Twice the shards, every entry moved to its new one.
    fn grow(&mut self) {
        let n = self.shards() * 2;
        let mut shards: Vec<HashMap<ShortStr, V>> = (0..n).map(|_| HashMap::default()).collect();
        for s in self.groups.iter().flat_map(|g| g.iter()) {
            for (k, v) in s.iter() {
                let (g, at) = shard(k, n);
                shards[g * GROUP + at].insert(k.clone(), v.clone());
            }
        }
        self.groups = grouped(shards.into_iter());
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
        let shards = |m: &Sharded<u32>| -> Vec<Shard<u32>> {
            m.groups.iter().flat_map(|g| g.iter().cloned()).collect()
        };
        let shared = shards(&a)
            .iter()
            .zip(&shards(&b))
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(
            shared >= SHARDS - 2,
            "only the changed shards were copied: {shared} shared"
        );
        let groups = a
            .groups
            .iter()
            .zip(&b.groups)
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(
            groups >= SHARDS / GROUP - 2,
            "and only their groups: {groups} shared"
        );
    }

    #[test]
    fn shards_multiply_as_the_map_grows_and_nothing_is_lost() {
        let mut m: Sharded<u32> = Sharded::default();
        let n = SHARDS * PER_SHARD * 4 + 7;
        for i in 0..n {
            m.insert(ShortStr::from(format!("k{i}")), i as u32);
        }
        assert!(m.shards() >= SHARDS * 4, "{} shards", m.shards());
        let biggest = m
            .groups
            .iter()
            .flat_map(|g| g.iter())
            .map(|s| s.len())
            .max()
            .unwrap_or(0);
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
