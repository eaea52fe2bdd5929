//! A vhost's bindings, indexed both ways: by source exchange (what routing and `if_unused`
//! need) and by destination (what deleting a queue or exchange needs), so that neither costs a
//! scan of every binding in the vhost.

use crate::model::{Binding, Destination};
use std::collections::{BTreeMap, HashSet};
use warren_amqp::ShortStr;

/// A binding as a hashable value: its arguments by their encoding.
type Key = (ShortStr, Destination, ShortStr, bytes::Bytes);

fn key(b: &Binding) -> Key {
    let mut args = bytes::BytesMut::new();
    b.arguments.encode(&mut args);
    (
        b.source.clone(),
        b.destination.clone(),
        b.routing_key.clone(),
        args.freeze(),
    )
}

#[derive(Debug, Default, Clone)]
pub struct Bindings {
    /// Every binding, so that finding one does not scan its exchange's (a direct exchange may
    /// have a binding per queue).
    keys: HashSet<Key>,
    by_source: BTreeMap<ShortStr, Vec<Binding>>,
    /// For each destination, how many bindings each source has to it.
    by_destination: BTreeMap<Destination, BTreeMap<ShortStr, u32>>,
}

impl Bindings {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, b: &Binding) -> bool {
        self.keys.contains(&key(b))
    }

    /// Adds a binding; false if it was there already.
    pub fn insert(&mut self, b: Binding) -> bool {
        if !self.keys.insert(key(&b)) {
            return false;
        }
        *self
            .by_destination
            .entry(b.destination.clone())
            .or_default()
            .entry(b.source.clone())
            .or_default() += 1;
        self.by_source.entry(b.source.clone()).or_default().push(b);
        true
    }

    /// Removes a binding; false if there was no such binding.
    pub fn remove(&mut self, b: &Binding) -> bool {
        if !self.keys.remove(&key(b)) {
            return false;
        }
        let Some(list) = self.by_source.get_mut(&b.source) else {
            return false;
        };
        let Some(at) = list.iter().position(|x| x == b) else {
            return false;
        };
        list.remove(at);
        if list.is_empty() {
            self.by_source.remove(&b.source);
        }
        self.forget_destination(&b.destination, &b.source, 1);
        true
    }

    fn forget_destination(&mut self, d: &Destination, source: &ShortStr, n: u32) {
        if let Some(sources) = self.by_destination.get_mut(d) {
            if let Some(count) = sources.get_mut(source) {
                *count = count.saturating_sub(n);
                if *count == 0 {
                    sources.remove(source);
                }
            }
            if sources.is_empty() {
                self.by_destination.remove(d);
            }
        }
    }

    pub fn from_source(&self, source: &ShortStr) -> &[Binding] {
        self.by_source.get(source).map_or(&[], Vec::as_slice)
    }

    pub fn has_source(&self, source: &ShortStr) -> bool {
        self.by_source.contains_key(source)
    }

    /// Removes every binding to `d`; returns them.
    pub fn remove_destination(&mut self, d: &Destination) -> Vec<Binding> {
        let Some(sources) = self.by_destination.remove(d) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for source in sources.keys() {
            if let Some(list) = self.by_source.get_mut(source) {
                let (gone, kept): (Vec<Binding>, Vec<Binding>) = std::mem::take(list)
                    .into_iter()
                    .partition(|b| b.destination == *d);
                *list = kept;
                if list.is_empty() {
                    self.by_source.remove(source);
                }
                removed.extend(gone);
            }
        }
        for b in &removed {
            self.keys.remove(&key(b));
        }
        removed
    }

    /// Removes every binding from `source`; returns them.
    pub fn remove_source(&mut self, source: &ShortStr) -> Vec<Binding> {
        let removed = self.by_source.remove(source).unwrap_or_default();
        for b in &removed {
            self.forget_destination(&b.destination, source, 1);
            self.keys.remove(&key(b));
        }
        removed
    }

    /// Every binding, by source exchange name.
    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.by_source.values().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_amqp::FieldTable;

    fn b(source: &str, queue: &str, key: &str) -> Binding {
        Binding {
            source: source.into(),
            destination: Destination::Queue(queue.into()),
            routing_key: key.into(),
            arguments: FieldTable::new(),
        }
    }

    #[test]
    fn both_indexes_stay_in_step() {
        let mut bs = Bindings::default();
        assert!(bs.insert(b("x", "q1", "a")));
        assert!(!bs.insert(b("x", "q1", "a")), "a duplicate is not added");
        assert!(bs.insert(b("x", "q1", "b")));
        assert!(bs.insert(b("y", "q1", "a")));
        assert!(bs.insert(b("x", "q2", "a")));
        assert_eq!(bs.len(), 4);
        let gone = bs.remove_destination(&Destination::Queue("q1".into()));
        assert_eq!(gone.len(), 3);
        assert_eq!(bs.len(), 1);
        assert!(!bs.has_source(&"y".into()), "y had only bindings to q1");
        assert_eq!(bs.from_source(&"x".into()), &[b("x", "q2", "a")]);
        assert!(bs.remove(&b("x", "q2", "a")));
        assert!(!bs.remove(&b("x", "q2", "a")));
        assert!(bs.is_empty());
        assert_eq!(bs.iter().count(), 0);
    }

    #[test]
    fn removing_a_source_updates_the_destination_index() {
        let mut bs = Bindings::default();
        bs.insert(b("x", "q", "1"));
        bs.insert(b("y", "q", "1"));
        assert_eq!(bs.remove_source(&"x".into()).len(), 1);
        // What is left for q is only y's binding.
        let gone = bs.remove_destination(&Destination::Queue("q".into()));
        assert_eq!(gone, vec![b("y", "q", "1")]);
        assert!(bs.is_empty());
    }
}
