//! Proxies of shared containers: dict, list, array, value, namespace.

use std::borrow::Borrow;
use std::ops::{Bound, RangeBounds};

use super::*;

/// `len` and `is_empty` for the proxy of a collection, `what` its elements (a macro: the same
/// methods on several types).
macro_rules! len_methods {
    ($name:ident < $($t:ident),* >, $what:literal, $python:literal) => {
        impl<$($t),*> $name<$($t),*> {
            #[doc = concat!("The number of ", $what, " (Python's ", $python, ").")]
            pub fn len(&self) -> Result<usize> {
                self.0.len()
            }

            #[doc = concat!("True if there are no ", $what, ".")]
            pub fn is_empty(&self) -> Result<bool> {
                Ok(self.len()? == 0)
            }
        }
    };
}

/// A shared dict held by a [`Manager`] (Python's `DictProxy`), in insertion order as Python's.
///
/// ```standalone_crate
/// # fn main() -> multiprocess::Result<()> {
/// # multiprocess::init_test();
/// use std::collections::HashMap;
/// let manager = multiprocess::Manager::start()?;
/// // Python: d = manager.dict({'ada': 36, 'alan': 41})
/// let d = manager.dict_from([("ada".to_string(), 36), ("alan".to_string(), 41)])?;
/// d.update([("grace".to_string(), 85)])?;
/// assert_eq!(d.keys()?, ["ada", "alan", "grace"]);
/// assert_eq!(d.get_or(&"bob".to_string(), 0)?, 0);
/// assert_eq!(d.setdefault(&"bob".to_string(), &7)?, 7);
/// assert_eq!(d.pop(&"alan".to_string())?, 41);
/// assert_eq!(d.popitem()?, ("bob".to_string(), 7));
/// let local: HashMap<String, u32> = d.copy()?;
/// assert_eq!(local.len(), 2);
/// # Ok(()) }
/// ```
///
/// Keys are compared by their encoding: two keys are the same key when they encode to the
/// same bytes (true of strings, integers and other plain data; not of a float `0.0` and
/// `-0.0`, nor of two equal `HashMap`s, whose entries may encode in another order).
/// Python's `d | other` is [`copy`](DictProxy::copy) and a local `extend`, `d |= other` is
/// [`update`](DictProxy::update); `for k in d` is [`keys`](DictProxy::keys) or
/// [`items`](DictProxy::items), a copy taken in one step (Python's proxy iterates remotely,
/// one call per key).
pub struct DictProxy<K, V>(pub(super) Handle, pub(super) PhantomData<fn() -> (K, V)>);
proxy_impls!(DictProxy<K, V>);
len_methods!(DictProxy<K, V>, "entries", "`len(d)`");

/// A `KeyError` from the manager, with Python's message: the key's repr.
fn key_error<T, K: Serialize>(result: Result<T>, key: &K) -> Result<T> {
    match result {
        Err(Error::Remote { kind, .. }) if kind == "KeyError" => Err(Error::Remote {
            kind,
            message: repr::repr(key),
        }),
        other => other,
    }
}

fn decode_pairs<K: DeserializeOwned, V: DeserializeOwned>(
    pairs: &[(Bytes, Bytes)],
) -> Result<Vec<(K, V)>> {
    pairs
        .iter()
        .map(|(k, v)| Ok((wire::decode(&k.0)?, wire::decode(&v.0)?)))
        .collect()
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// The value for `key`, if any (Python's `d.get(key)`).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.0.call(Op::Get(encode(key)?))? {
            Reply::Maybe(b) => b.map(|b| wire::decode(&b.0)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// The value for `key`, or `default` if there is none (Python's `d.get(key, default)`);
    /// the dict is not changed.
    pub fn get_or(&self, key: &K, default: V) -> Result<V> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// The value for `key` (Python's `d[key]`).
    ///
    /// # Errors
    /// [`Error::Remote`] `KeyError` if there is none (its message is the key's repr, as
    /// Python's: `'missing'`).
    pub fn get_item(&self, key: &K) -> Result<V> {
        key_error(self.0.value(Op::GetItem(encode(key)?)), key)
    }

    /// Sets `key` to `value` (Python's `d[key] = value`).
    pub fn set(&self, key: &K, value: &V) -> Result<()> {
        self.0.done(Op::SetItem(encode(key)?, encode(value)?))
    }

    /// Removes `key` (Python's `del d[key]`).
    ///
    /// # Errors
    /// [`Error::Remote`] `KeyError` if there is none.
    pub fn del(&self, key: &K) -> Result<()> {
        key_error(self.0.done(Op::DelItem(encode(key)?)), key)
    }

    /// Whether `key` is present (Python's `key in d`).
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.0.flag(Op::Contains(encode(key)?))
    }

    /// The keys, in insertion order (Python's `list(d.keys())`).
    pub fn keys(&self) -> Result<Vec<K>> {
        self.0.list(Op::Keys)
    }

    /// The values, in insertion order (Python's `list(d.values())`).
    pub fn values(&self) -> Result<Vec<V>> {
        self.0.list(Op::Values)
    }

    /// The entries, in insertion order (Python's `list(d.items())`).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.0.call(Op::Items)? {
            Reply::Pairs(pairs) => decode_pairs(&pairs),
            other => Err(unexpected(other)),
        }
    }

    /// A local copy of the entries, in any collection of pairs (Python's `d.copy()`, which
    /// also gives a plain dict): a `HashMap`, a `BTreeMap`, or a `Vec<(K, V)>` in insertion
    /// order. `let m: HashMap<_, _> = d.copy()?;`
    pub fn copy<C: FromIterator<(K, V)>>(&self) -> Result<C> {
        Ok(self.items()?.into_iter().collect())
    }

    /// Sets each key to its value, in order, in one step (Python's `d.update(pairs)`):
    /// `d.update([(k, v)])`, `d.update(local_map)` or `d.update(&local_map)`.
    pub fn update<I, Q, W>(&self, pairs: I) -> Result<()>
    where
        I: IntoIterator<Item = (Q, W)>,
        Q: Borrow<K>,
        W: Borrow<V>,
    {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| Ok((encode(k.borrow())?, encode(v.borrow())?)))
            .collect::<Result<Vec<_>>>()?;
        self.0.done(Op::Update(pairs))
    }

    /// Removes `key` and returns its value (Python's `d.pop(key)`).
    ///
    /// # Errors
    /// [`Error::Remote`] `KeyError` if there is none.
    pub fn pop(&self, key: &K) -> Result<V> {
        match self.0.call(Op::PopKey(encode(key)?))? {
            Reply::Maybe(Some(v)) => wire::decode(&v.0),
            Reply::Maybe(None) => Err(Error::Remote {
                kind: "KeyError".into(),
                message: repr::repr(key),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Removes `key` and returns its value, or `default` if there is none (Python's
    /// `d.pop(key, default)`).
    pub fn pop_or(&self, key: &K, default: V) -> Result<V> {
        match self.0.call(Op::PopKey(encode(key)?))? {
            Reply::Maybe(v) => v.map_or(Ok(default), |v| wire::decode(&v.0)),
            other => Err(unexpected(other)),
        }
    }

    /// Removes and returns the entry inserted last (Python's `d.popitem()`).
    ///
    /// # Errors
    /// [`Error::Remote`] `KeyError` (`popitem(): dictionary is empty`) if there is none.
    pub fn popitem(&self) -> Result<(K, V)> {
        match self.0.call(Op::PopItem)? {
            Reply::Pairs(pairs) if pairs.len() == 1 => {
                decode_pairs(&pairs).map(|mut p| p.remove(0))
            }
            other => Err(unexpected(other)),
        }
    }

    /// The value for `key`, set to `default` first if there is none, in one step (Python's
    /// `d.setdefault(key, default)`).
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        self.0.value(Op::SetDefault(encode(key)?, encode(default)?))
    }

    /// Removes every entry (Python's `d.clear()`).
    pub fn clear(&self) -> Result<()> {
        self.0.done(Op::Clear)
    }
}

/// A shared list held by a [`Manager`] (Python's `ListProxy`). Indices follow Python: a
/// negative one counts from the end; a slice's ends are clamped to the list.
///
/// ```standalone_crate
/// # fn main() -> multiprocess::Result<()> {
/// # multiprocess::init_test();
/// let manager = multiprocess::Manager::start()?;
/// let l = manager.list_from([3, 1, 4, 1, 5])?; // Python: manager.list([3, 1, 4, 1, 5])
/// l.extend([9, 2])?;
/// l.insert(0, &6)?;
/// assert_eq!(l.count(&1)?, 2);
/// l.remove(&1)?; // the first 1
/// assert_eq!(l.index(&1)?, 3);
/// l.sort()?;
/// assert_eq!(l.to_vec()?, [1, 2, 3, 4, 5, 6, 9]);
/// assert_eq!(l.get_slice(1..3)?, [2, 3]); // l[1:3]
/// assert_eq!(l.get_slice(-2..)?, [6, 9]); // l[-2:]
/// l.del_slice(..5)?; // del l[:5]
/// assert_eq!(l.pop()?, 9);
/// assert_eq!(l.to_vec()?, [6]);
/// # Ok(()) }
/// ```
///
/// Equality (`index`, `count`, `remove`, `contains`) is equality of the encodings, which the
/// manager compares without knowing the type: as [`DictProxy`]'s keys. Ordering needs the
/// type, so [`sort`](ListProxy::sort) sorts here, in the calling process, while the manager
/// holds the list for it (see there). Python's extended slices with a step (`l[::2]`) are not
/// offered: they are rare on a shared list, and [`to_vec`](ListProxy::to_vec) then
/// `step_by` reads one; `l + other` and `l * n` (a new local list) are `to_vec` and `Vec`'s
/// own methods.
pub struct ListProxy<T>(pub(super) Handle, pub(super) PhantomData<fn() -> T>);
proxy_impls!(ListProxy<T>);
len_methods!(ListProxy<T>, "items", "`len(l)`");

/// A range of a list as its ends (Python's `a:b`, with Rust's inclusive end too).
fn bounds(range: impl RangeBounds<i64>) -> (Bound<i64>, Bound<i64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

fn encode_all<T: Serialize>(items: impl IntoIterator<Item = impl Borrow<T>>) -> Result<Vec<Blob>> {
    items.into_iter().map(|x| encode(x.borrow())).collect()
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `value` (Python's `l.append(value)`).
    pub fn append(&self, value: &T) -> Result<()> {
        self.0.done(Op::Append(encode(value)?))
    }

    /// Appends every item, in order, in one step (Python's `l.extend(items)` and `l +=
    /// items`): `l.extend([1, 2])`, `l.extend(&local_vec)`.
    pub fn extend(&self, items: impl IntoIterator<Item = impl Borrow<T>>) -> Result<()> {
        self.0.done(Op::Extend(encode_all(items)?))
    }

    /// Inserts `value` before `index` (Python's `l.insert(index, value)`): a negative index
    /// counts from the end, and one past either end inserts at that end (never an error).
    pub fn insert(&self, index: i64, value: &T) -> Result<()> {
        self.0.done(Op::Insert(index, encode(value)?))
    }

    /// The item at `index` (Python's `l[index]`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` (`list index out of range`) when out of range.
    pub fn get(&self, index: i64) -> Result<T> {
        self.0.value(Op::Index(index))
    }

    /// Replaces the item at `index` (Python's `l[index] = value`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` when out of range.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.0.done(Op::SetIndex(index, encode(value)?))
    }

    /// Removes and returns the last item (Python's `l.pop()`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` (`pop from empty list`) when empty.
    pub fn pop(&self) -> Result<T> {
        self.0.value(Op::Pop(None))
    }

    /// Removes and returns the item at `index` (Python's `l.pop(index)`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` (`pop index out of range`, or `pop from empty list`).
    pub fn pop_at(&self, index: i64) -> Result<T> {
        self.0.value(Op::Pop(Some(index)))
    }

    /// Removes the first item equal to `value` (Python's `l.remove(value)`).
    ///
    /// # Errors
    /// [`Error::Remote`] `ValueError` (`list.remove(x): x not in list`) if there is none.
    pub fn remove(&self, value: &T) -> Result<()> {
        self.0.done(Op::Remove(encode(value)?))
    }

    /// The position of the first item equal to `value` (Python's `l.index(value)`).
    ///
    /// # Errors
    /// [`Error::Remote`] `ValueError` (`list.index(x): x not in list`) if there is none.
    pub fn index(&self, value: &T) -> Result<usize> {
        self.index_in(value, ..)
    }

    /// The position (in the whole list) of the first item equal to `value` within `range`
    /// (Python's `l.index(value, start, stop)`: `l.index_in(&x, 2..)`).
    ///
    /// # Errors
    /// As [`index`](ListProxy::index).
    pub fn index_in(&self, value: &T, range: impl RangeBounds<i64>) -> Result<usize> {
        let (start, end) = bounds(range);
        self.0
            .len_of(Op::Find(encode(value)?, start, end))
            .map(|n| n as usize)
    }

    /// How many items equal `value` (Python's `l.count(value)`).
    pub fn count(&self, value: &T) -> Result<usize> {
        self.0
            .len_of(Op::CountOf(encode(value)?))
            .map(|n| n as usize)
    }

    /// Whether an item equals `value` (Python's `value in l`).
    pub fn contains(&self, value: &T) -> Result<bool> {
        self.0.flag(Op::Contains(encode(value)?))
    }

    /// Reverses the items in place (Python's `l.reverse()`).
    pub fn reverse(&self) -> Result<()> {
        self.0.done(Op::Reverse)
    }

    /// Sorts the items in place, stably, by `T`'s order (Python's `l.sort()`); see
    /// [`sort_by`](ListProxy::sort_by).
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.sort_by(T::cmp)
    }

    /// Sorts the items in place, stably, by the key `f` gives (Python's `l.sort(key=f)`;
    /// `sort_by_key(|x| Reverse(x.len()))` for `reverse=True`); see
    /// [`sort_by`](ListProxy::sort_by).
    pub fn sort_by_key<K: Ord>(&self, mut f: impl FnMut(&T) -> K) -> Result<()> {
        self.sort_by(|a, b| f(a).cmp(&f(b)))
    }

    /// Sorts the items in place, stably, by `compare` (floats: `l.sort_by(f64::total_cmp)`).
    ///
    /// The manager keeps encoded bytes, which do not sort as the values do, so the sort runs
    /// here: the manager holds the list for this thread (other processes' and threads' calls
    /// on it wait, so the sort is one step for them, as Python's), sends its items, and takes
    /// back only their new order; the items' bytes never travel back. `compare` may capture
    /// (it runs in this process), but must not use this list (it would wait for the sort).
    /// If this thread fails or `compare` panics, the list is let go unchanged; if this
    /// process dies, the manager lets go when its connection closes.
    ///
    /// # Errors
    /// [`Error::Codec`] if an item is not a `T`; as other calls.
    pub fn sort_by(&self, mut compare: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Result<()> {
        /// Lets go of the list if the sort does not finish.
        struct Held<'a>(&'a Handle, bool);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                if self.1 {
                    let _ = self.0.done(Op::Unhold);
                }
            }
        }
        let items: Vec<Bytes> = match self.0.call(Op::Hold)? {
            Reply::List(items) => items,
            other => return Err(unexpected(other)),
        };
        let mut held = Held(&self.0, true);
        let values = items
            .iter()
            .map(|b| wire::decode::<T>(&b.0))
            .collect::<Result<Vec<T>>>()?;
        drop(items);
        let mut order: Vec<u32> = (0..values.len() as u32).collect();
        order.sort_by(|&a, &b| compare(&values[a as usize], &values[b as usize]));
        held.1 = false;
        self.0.done(Op::Permute(order))
    }

    /// The items of `range` (Python's `l[a:b]`): `get_slice(1..3)`, `get_slice(-2..)`,
    /// `get_slice(..=4)`. Ends out of range are clamped, as Python's; an end before the
    /// start gives no items.
    pub fn get_slice(&self, range: impl RangeBounds<i64>) -> Result<Vec<T>> {
        let (start, end) = bounds(range);
        self.0.list(Op::Slice(start, end))
    }

    /// Replaces the items of `range` with `items`, in one step (Python's `l[a:b] = items`):
    /// the list grows or shrinks as the counts differ; an empty range inserts at its start
    /// (`set_slice(0..0, [x])` puts `x` first).
    pub fn set_slice(
        &self,
        range: impl RangeBounds<i64>,
        items: impl IntoIterator<Item = impl Borrow<T>>,
    ) -> Result<()> {
        let (start, end) = bounds(range);
        self.0.done(Op::SetSlice(start, end, encode_all(items)?))
    }

    /// Removes the items of `range` (Python's `del l[a:b]`).
    pub fn del_slice(&self, range: impl RangeBounds<i64>) -> Result<()> {
        let (start, end) = bounds(range);
        self.0.done(Op::DelSlice(start, end))
    }

    /// Repeats the items in place `n` times (Python's `l *= n`; 0 empties the list).
    pub fn repeat(&self, n: u32) -> Result<()> {
        self.0.done(Op::Repeat(n))
    }

    /// A copy of the items (Python's `l[:]`, `list(l)`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.0.list(Op::Items)
    }

    /// Removes every item (Python's `l.clear()`).
    pub fn clear(&self) -> Result<()> {
        self.0.done(Op::Clear)
    }
}

/// A shared fixed-length array held by a [`Manager`] (Python's `ArrayProxy`). Indices follow
/// Python: a negative one counts from the end.
///
/// ```standalone_crate
/// use multiprocess::managers::ArrayProxy;
/// use multiprocess::{Manager, Process};
///
/// /// Negates every item (Python's docs: `for i in range(len(a)): a[i] = -a[i]`).
/// fn negate(a: ArrayProxy<i32>) {
///     for (i, x) in a.to_vec().unwrap().into_iter().enumerate() {
///         a.set(i as i64, &-x).unwrap();
///     }
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?;
/// let a = manager.array(&[1, 2, 3])?; // Python: manager.Array('i', [1, 2, 3])
/// let mut p = Process::new(negate, (a.clone(),));
/// p.start()?;
/// p.join()?;
/// assert_eq!(a.to_vec()?, [-1, -2, -3]);
/// assert_eq!(a.get(-1)?, -3);
/// # Ok(()) }
/// ```
pub struct ArrayProxy<T>(pub(super) Handle, pub(super) PhantomData<fn() -> T>);
proxy_impls!(ArrayProxy<T>);
len_methods!(ArrayProxy<T>, "items", "`len(a)`, fixed at creation");

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// The item at `index` (Python's `a[index]`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` when out of range.
    pub fn get(&self, index: i64) -> Result<T> {
        self.0.value(Op::Index(index))
    }

    /// Replaces the item at `index` (Python's `a[index] = value`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` when out of range.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.0.done(Op::SetIndex(index, encode(value)?))
    }

    /// A copy of the items (Python's `a[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.0.list(Op::Items)
    }
}

/// A shared value held by a [`Manager`] (Python's `ValueProxy`, its `.value`).
///
/// Each `get` and `set` is one call to the manager; a read-modify-write from several processes
/// needs a lock around it (a [`LockProxy`](super::LockProxy) from the same manager):
///
/// ```standalone_crate
/// use multiprocess::managers::{LockProxy, ValueProxy};
/// use multiprocess::{Manager, Process};
///
/// /// Adds `n` to the shared value, one under the lock at a time.
/// fn add(total: ValueProxy<u64>, lock: LockProxy, n: u64) {
///     for _ in 0..n {
///         lock.acquire().unwrap();
///         let v = total.get().unwrap();
///         total.set(&(v + 1)).unwrap();
///         lock.release().unwrap();
///     }
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?;
/// let (total, lock) = (manager.value(&0u64)?, manager.lock()?); // Python: manager.Value('Q', 0)
/// let mut children: Vec<Process> = (0..2)
///     .map(|_| Process::new(add, (total.clone(), lock.clone(), 50)))
///     .collect();
/// for p in &mut children {
///     p.start()?;
/// }
/// for p in &mut children {
///     p.join()?;
/// }
/// assert_eq!(total.get()?, 100);
/// # Ok(()) }
/// ```
pub struct ValueProxy<T>(pub(super) Handle, pub(super) PhantomData<fn() -> T>);
proxy_impls!(ValueProxy<T>);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value (Python's `v.value` / `v.get()`).
    pub fn get(&self) -> Result<T> {
        self.0.value(Op::Load)
    }

    /// Replaces the value (Python's `v.value = x` / `v.set(x)`).
    pub fn set(&self, value: &T) -> Result<()> {
        self.0.done(Op::Store(encode(value)?))
    }
}

/// A namespace held by a [`Manager`] (Python's `manager.Namespace()`): named attributes, each
/// of any serde type (read back as the type it was written as).
///
/// It prints as Python prints one, `Namespace(name='Bob', x=1)` (attributes by name, those
/// starting with `_` left out), with `{}` and `{:?}` alike: each value's Python repr is kept
/// with it when it is set.
///
/// ```standalone_crate
/// use multiprocess::managers::NamespaceProxy;
/// use multiprocess::{Manager, Process};
///
/// /// Sets an attribute from another process (Python: `ns.name = 'Bob'`).
/// fn name_it(ns: NamespaceProxy) {
///     ns.set("name", &"Bob".to_string()).unwrap();
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?;
/// let ns = manager.namespace()?;
/// ns.set("x", &1)?;
/// let mut p = Process::new(name_it, (ns.clone(),));
/// p.start()?;
/// p.join()?;
/// assert_eq!(ns.get::<String>("name")?, "Bob");
/// assert_eq!(format!("{ns:?}"), "Namespace(name='Bob', x=1)");
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct NamespaceProxy(pub(super) Handle);

/// An attribute as the manager keeps it: the value, and its Python repr (for printing).
type Attribute = (Bytes, String);

fn no_attribute(name: &str) -> Error {
    Error::Remote {
        kind: "AttributeError".into(),
        message: format!("'Namespace' object has no attribute '{name}'"),
    }
}

impl NamespaceProxy {
    /// Attribute `name` (Python's `ns.name`).
    ///
    /// # Errors
    /// [`Error::Remote`] `AttributeError` if there is none.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        match self.0.value::<Attribute>(Op::GetItem(encode(name)?)) {
            Ok((value, _)) => wire::decode(&value.0),
            Err(Error::Remote { kind, .. }) if kind == "KeyError" => Err(no_attribute(name)),
            Err(e) => Err(e),
        }
    }

    /// Sets attribute `name` (Python's `ns.name = value`).
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let attribute: Attribute = (encode(value)?.into(), repr::repr(value));
        self.0
            .done(Op::SetItem(encode(name)?, wire::encode(&attribute)?.into()))
    }

    /// Removes attribute `name` (Python's `del ns.name`).
    ///
    /// # Errors
    /// [`Error::Remote`] `AttributeError` if there is none.
    pub fn del(&self, name: &str) -> Result<()> {
        match self.0.done(Op::DelItem(encode(name)?)) {
            Err(Error::Remote { kind, .. }) if kind == "KeyError" => Err(no_attribute(name)),
            other => other,
        }
    }

    /// The attributes' names, in the order they were first set (Python's `vars(ns)` keys).
    pub fn names(&self) -> Result<Vec<String>> {
        self.0.list(Op::Keys)
    }

    /// What it prints as: `Namespace(name='Bob')`.
    fn python_repr(&self) -> Result<String> {
        let mut shown = match self.0.call(Op::Items)? {
            Reply::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v)| {
                    let name: String = wire::decode(&k.0)?;
                    let (_, repr): Attribute = wire::decode(&v.0)?;
                    Ok(format!("{name}={repr}"))
                })
                .collect::<Result<Vec<String>>>()?,
            other => return Err(unexpected(other)),
        };
        // As Python's `Namespace.__repr__`: sorted, without the private ones.
        shown.retain(|s| !s.starts_with('_'));
        shown.sort();
        Ok(format!("Namespace({})", shown.join(", ")))
    }
}

/// Python's `str(ns)`: `Namespace(name='Bob')`, read from the manager (the proxy's address and
/// id if the manager cannot be reached).
impl std::fmt::Display for NamespaceProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.python_repr() {
            Ok(s) => f.write_str(&s),
            Err(e) => write!(
                f,
                "<NamespaceProxy at {:?}, id {} ({e})>",
                self.0.client.address, self.0.id
            ),
        }
    }
}

/// As [`Display`](std::fmt::Display): `Namespace(name='Bob')`.
impl std::fmt::Debug for NamespaceProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl<K, V> Named for DictProxy<K, V> {
    const KIND: Kind = Kind::Dict;
    fn from_handle(handle: HandleRef) -> Self {
        DictProxy(handle.0, PhantomData)
    }
}

impl<T> Named for ListProxy<T> {
    const KIND: Kind = Kind::List;
    fn from_handle(handle: HandleRef) -> Self {
        ListProxy(handle.0, PhantomData)
    }
}

impl<T> Named for QueueProxy<T> {
    const KIND: Kind = Kind::Queue(0);
    fn from_handle(handle: HandleRef) -> Self {
        QueueProxy(handle.0, PhantomData)
    }
}
