//! Proxies of shared containers: dict, list, array, value, namespace.

use super::*;

/// A shared dict held by a [`Manager`] (Python's `DictProxy`). Keys are compared by their
/// encoding: two keys are the same key when they encode to the same bytes (true of strings,
/// integers and other plain data).
pub struct DictProxy<K, V>(pub(super) Handle, pub(super) PhantomData<fn() -> (K, V)>);
proxy_impls!(DictProxy<K, V>);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// The value for `key`, if any (Python's `d.get(key)`).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.0.call(Op::Get(encode(key)?))? {
            Reply::Maybe(b) => b.map(|b| wire::decode(&b.0)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// The value for `key` (Python's `d[key]`).
    ///
    /// # Errors
    /// [`Error::Remote`] `KeyError` if there is none.
    pub fn get_item(&self, key: &K) -> Result<V> {
        self.0.value(Op::GetItem(encode(key)?))
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
        self.0.done(Op::DelItem(encode(key)?))
    }

    /// Whether `key` is present (Python's `key in d`).
    pub fn contains(&self, key: &K) -> Result<bool> {
        self.0.flag(Op::Contains(encode(key)?))
    }

    /// The number of entries.
    pub fn len(&self) -> Result<usize> {
        self.0.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.0.list(Op::Keys)
    }

    /// The entries, in insertion order (Python's `d.items()`, or `d.copy()`).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.0.call(Op::Items)? {
            Reply::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v)| Ok((wire::decode(&k.0)?, wire::decode(&v.0)?)))
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.0.done(Op::Clear)
    }
}

/// A shared list held by a [`Manager`] (Python's `ListProxy`). Indices follow Python: a
/// negative one counts from the end.
pub struct ListProxy<T>(pub(super) Handle, pub(super) PhantomData<fn() -> T>);
proxy_impls!(ListProxy<T>);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `value`.
    pub fn append(&self, value: &T) -> Result<()> {
        self.0.done(Op::Append(encode(value)?))
    }

    /// The item at `index` (Python's `l[index]`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` when out of range.
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

    /// Removes and returns the item at `index`, the last one for `None` (Python's `pop`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` when out of range or empty.
    pub fn pop(&self, index: Option<i64>) -> Result<T> {
        self.0.value(Op::Pop(index))
    }

    /// The number of items.
    pub fn len(&self) -> Result<usize> {
        self.0.len()
    }

    /// True if there are no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the items (Python's `l[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.0.list(Op::Items)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.0.done(Op::Clear)
    }
}

/// A shared fixed-length array held by a [`Manager`] (Python's `ArrayProxy`). Indices follow
/// Python: a negative one counts from the end.
pub struct ArrayProxy<T>(pub(super) Handle, pub(super) PhantomData<fn() -> T>);
proxy_impls!(ArrayProxy<T>);

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

    /// The number of items (fixed at creation).
    pub fn len(&self) -> Result<usize> {
        self.0.len()
    }

    /// True for an array of no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the items (Python's `a[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.0.list(Op::Items)
    }
}

/// A shared value held by a [`Manager`] (Python's `ValueProxy`, its `.value`).
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceProxy(pub(super) Handle);

impl NamespaceProxy {
    /// Attribute `name` (Python's `ns.name`).
    ///
    /// # Errors
    /// [`Error::Remote`] `AttributeError` if there is none.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        match self.0.value(Op::GetItem(encode(name)?)) {
            Err(Error::Remote { kind, .. }) if kind == "KeyError" => Err(Error::Remote {
                kind: "AttributeError".into(),
                message: format!("'Namespace' object has no attribute '{name}'"),
            }),
            other => other,
        }
    }

    /// Sets attribute `name` (Python's `ns.name = value`).
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.0.done(Op::SetItem(encode(name)?, encode(value)?))
    }

    /// Removes attribute `name` (Python's `del ns.name`).
    ///
    /// # Errors
    /// [`Error::Remote`] `AttributeError` if there is none.
    pub fn del(&self, name: &str) -> Result<()> {
        match self.0.done(Op::DelItem(encode(name)?)) {
            Err(Error::Remote { kind, .. }) if kind == "KeyError" => Err(Error::Remote {
                kind: "AttributeError".into(),
                message: name.to_string(),
            }),
            other => other,
        }
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
    const KIND: Kind = Kind::Queue;
    fn from_handle(handle: HandleRef) -> Self {
        QueueProxy(handle.0, PhantomData)
    }
}
