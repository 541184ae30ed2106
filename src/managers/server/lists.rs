//! A manager's dicts and lists: their operations on encoded keys, values and items.
//!
//! The server never knows the items' types, so equality (a dict's keys, a list's `index`,
//! `count`, `remove`, `in`) is equality of the encodings. Ordering cannot be had that way (an
//! encoding's bytes do not sort as the values do), so a list is sorted by its client: it holds
//! the list ([`Op::Hold`]: others' calls on it wait), sorts the decoded items and sends back
//! only the new order ([`Op::Permute`]), which also lets go.

use std::ops::Bound;

use super::*;

/// A dict that keeps insertion order (deleted slots are compacted away when they pile up).
#[derive(Default)]
pub(super) struct Dict {
    pub(super) entries: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    pub(super) index: rustc_hash::FxHashMap<Vec<u8>, usize>,
}

impl Dict {
    /// A dict of these entries (a later one for the same key replaces the value, keeping the
    /// first one's place, as Python's `dict(pairs)`).
    pub(super) fn from_pairs(pairs: Vec<(Bytes, Bytes)>) -> Dict {
        let mut d = Dict::default();
        for (k, v) in pairs {
            d.set(Blob::from(k.0), Blob::from(v.0));
        }
        d
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        let i = *self.index.get(key)?;
        self.entries[i].as_ref().map(|(_, v)| v)
    }

    /// Sets `key`'s value (a key already there keeps its place, and its first bytes, as
    /// Python's dict keeps the first key object).
    pub(super) fn set(&mut self, key: Blob, value: Blob) {
        match self.index.get(&key[..]) {
            Some(&i) => match &mut self.entries[i] {
                Some((_, old)) => store(old, value),
                none => *none = Some((key.into_vec(), value.into_vec())),
            },
            None => {
                let key = key.into_vec();
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push(Some((key, value.into_vec())));
            }
        }
    }

    pub(super) fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let i = self.index.remove(key)?;
        let (_, value) = self.entries[i].take()?;
        if self.entries.len() > 2 * self.index.len() + 8 {
            self.entries.retain(Option::is_some);
            for (i, (k, _)) in self.entries.iter().flatten().enumerate() {
                self.index.insert(k.clone(), i);
            }
        }
        Some(value)
    }

    /// Removes the entry inserted last (Python's `popitem`, LIFO since 3.7).
    fn pop_last(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        while let Some(last) = self.entries.pop() {
            if let Some((k, v)) = last {
                self.index.remove(&k);
                return Some((k, v));
            }
        }
        None
    }

    pub(super) fn items(&self) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>)> {
        self.entries.iter().flatten()
    }
}

/// A list's items, and the client holding it for a sort, if one is.
#[derive(Default)]
pub(super) struct List {
    pub(super) items: Vec<Vec<u8>>,
    pub(super) held: Option<u64>,
}

fn bytes(b: &[u8]) -> Bytes {
    Bytes(b.to_vec())
}

/// Moves an operation's bytes out (an operation runs once it is taken: one that waits, see
/// `objects::call`, takes nothing before it runs).
fn take(b: &mut Blob) -> Blob {
    std::mem::take(b)
}

/// Puts `value` where `slot` was: in its buffer when that has room (no allocation for a
/// small value replacing another), else its own.
pub(super) fn store(slot: &mut Vec<u8>, value: Blob) {
    if value.0.spilled() || slot.capacity() < value.len() {
        *slot = value.into_vec();
    } else {
        slot.clear();
        slot.extend_from_slice(&value);
    }
}

/// Runs a dict's `op`.
pub(super) fn dict_call(d: &mut Dict, op: &mut Op) -> Reply {
    match op {
        Op::Get(k) => Reply::Maybe(d.get(k).map(|v| Blob::from(&v[..]))),
        Op::GetItem(k) => match d.get(k) {
            Some(v) => Reply::Bytes(Blob::from(&v[..])),
            None => remote("KeyError", "no such key"),
        },
        Op::SetItem(k, v) => {
            d.set(take(k), take(v));
            Reply::Done
        }
        Op::DelItem(k) => match d.remove(&k.0) {
            Some(_) => Reply::Done,
            None => remote("KeyError", "no such key"),
        },
        Op::Contains(k) => Reply::Bool(d.get(&k.0).is_some()),
        Op::Len => Reply::Len(d.index.len() as u64),
        Op::Keys => Reply::List(d.items().map(|(k, _)| bytes(k)).collect()),
        Op::Values => Reply::List(d.items().map(|(_, v)| bytes(v)).collect()),
        Op::Items => Reply::Pairs(d.items().map(|(k, v)| (bytes(k), bytes(v))).collect()),
        Op::Clear => {
            *d = Dict::default();
            Reply::Done
        }
        Op::Update(pairs) => {
            for (k, v) in pairs {
                d.set(take(k), take(v));
            }
            Reply::Done
        }
        Op::PopKey(k) => Reply::Maybe(d.remove(k).map(Blob::from)),
        Op::PopItem => match d.pop_last() {
            Some((k, v)) => Reply::Pairs(vec![(Bytes(k), Bytes(v))]),
            None => remote("KeyError", "popitem(): dictionary is empty"),
        },
        Op::SetDefault(k, default) => match d.get(k) {
            Some(v) => Reply::Bytes(Blob::from(&v[..])),
            None => {
                d.set(take(k), default.clone());
                Reply::Bytes(take(default))
            }
        },
        op => no_method(op),
    }
}

pub(super) fn no_method(op: &Op) -> Reply {
    remote(
        "AttributeError",
        format!("this object has no method {:?}", op.name()),
    )
}

/// Python's slice rules for `l[start:end]` on `len` items: a negative index counts from the
/// end, and both ends are clamped to the list; an end before the start is the start (an
/// empty slice there).
pub(super) fn slice(start: Bound<i64>, end: Bound<i64>, len: usize) -> (usize, usize) {
    let n = len as i64;
    let at = |i: i64| if i < 0 { i.saturating_add(n) } else { i };
    let clamp = |i: i64| i.clamp(0, n) as usize;
    let s = match start {
        Bound::Unbounded => 0,
        Bound::Included(i) => clamp(at(i)),
        Bound::Excluded(i) => clamp(at(i).saturating_add(1)),
    };
    let e = match end {
        Bound::Unbounded => len,
        Bound::Included(i) => clamp(at(i).saturating_add(1)),
        Bound::Excluded(i) => clamp(at(i)),
    };
    (s, e.max(s))
}

/// Runs a list's (or an array's) `op` for `client`; `None` while another client holds it.
pub(super) fn list_call(list: &mut List, op: &mut Op, client: u64) -> Option<Reply> {
    if list.held.is_some_and(|h| h != client) {
        return None;
    }
    let l = &mut list.items;
    Some(match op {
        Op::Append(v) => {
            l.push(take(v).into_vec());
            Reply::Done
        }
        Op::Extend(items) => {
            l.extend(items.iter_mut().map(|b| take(b).into_vec()));
            Reply::Done
        }
        Op::Insert(i, v) => {
            let n = l.len() as i64;
            let at = if *i < 0 { i.saturating_add(n) } else { *i };
            l.insert(at.clamp(0, n) as usize, take(v).into_vec());
            Reply::Done
        }
        Op::Index(i) => match position(*i, l.len()) {
            Some(i) => Reply::Bytes(Blob::from(&l[i][..])),
            None => remote("IndexError", "list index out of range"),
        },
        Op::SetIndex(i, v) => match position(*i, l.len()) {
            Some(i) => {
                store(&mut l[i], take(v));
                Reply::Done
            }
            None => remote("IndexError", "list assignment index out of range"),
        },
        Op::Pop(i) => match position(i.unwrap_or(-1), l.len()) {
            Some(i) => Reply::Bytes(Blob::from(l.remove(i))),
            None if l.is_empty() => remote("IndexError", "pop from empty list"),
            None => remote("IndexError", "pop index out of range"),
        },
        Op::Remove(v) => match l.iter().position(|x| x[..] == v[..]) {
            Some(i) => {
                l.remove(i);
                Reply::Done
            }
            None => remote("ValueError", "list.remove(x): x not in list"),
        },
        Op::Find(v, start, end) => {
            let (s, e) = slice(*start, *end, l.len());
            match l[s..e].iter().position(|x| x[..] == v[..]) {
                Some(i) => Reply::Len((s + i) as u64),
                None => remote("ValueError", "list.index(x): x not in list"),
            }
        }
        Op::CountOf(v) => Reply::Len(l.iter().filter(|x| x[..] == v[..]).count() as u64),
        Op::Contains(v) => Reply::Bool(l.iter().any(|x| x[..] == v[..])),
        Op::Reverse => {
            l.reverse();
            Reply::Done
        }
        Op::Slice(start, end) => {
            let (s, e) = slice(*start, *end, l.len());
            Reply::List(l[s..e].iter().map(|b| bytes(b)).collect())
        }
        Op::SetSlice(start, end, items) => {
            let (s, e) = slice(*start, *end, l.len());
            l.splice(s..e, items.iter_mut().map(|b| take(b).into_vec()));
            Reply::Done
        }
        Op::DelSlice(start, end) => {
            let (s, e) = slice(*start, *end, l.len());
            l.drain(s..e);
            Reply::Done
        }
        Op::Repeat(n) => {
            let once = std::mem::take(l);
            let total = once.len().saturating_mul(*n as usize);
            if total > u32::MAX as usize {
                return Some(remote("MemoryError", "the list would be too long"));
            }
            for _ in 0..*n {
                l.extend(once.iter().cloned());
            }
            Reply::Done
        }
        Op::Len => Reply::Len(l.len() as u64),
        Op::Items => Reply::List(l.iter().map(|b| bytes(b)).collect()),
        Op::Clear => {
            l.clear();
            Reply::Done
        }
        Op::Hold => {
            list.held = Some(client);
            Reply::List(list.items.iter().map(|b| bytes(b)).collect())
        }
        Op::Permute(order) => {
            if list.held != Some(client) {
                return Some(remote("RuntimeError", "the list is not held for a sort"));
            }
            list.held = None;
            match permuted(&mut list.items, order) {
                Ok(()) => Reply::Done,
                Err(why) => remote("ValueError", why),
            }
        }
        Op::Unhold => {
            if list.held == Some(client) {
                list.held = None;
            }
            Reply::Done
        }
        op => no_method(op),
    })
}

/// Puts `items` in `order` (new position → old position), if it is a permutation of them
/// (else they stay as they were).
fn permuted(items: &mut Vec<Vec<u8>>, order: &[u32]) -> std::result::Result<(), String> {
    if order.len() != items.len() {
        return Err(format!(
            "a new order of {} items for a list of {}",
            order.len(),
            items.len()
        ));
    }
    let mut seen = vec![false; items.len()];
    for &i in order {
        match seen.get_mut(i as usize) {
            Some(s) if !*s => *s = true,
            _ => return Err(format!("the new order is not a permutation (at {i})")),
        }
    }
    let mut old: Vec<Vec<u8>> = std::mem::take(items);
    *items = order
        .iter()
        .map(|&i| std::mem::take(&mut old[i as usize]))
        .collect();
    Ok(())
}
