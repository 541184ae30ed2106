//! Python's `multiprocessing.shared_memory.ShareableList`: a fixed-length list of small values
//! in a [`SharedMemory`] segment, laid out byte for byte as CPython lays it out, so that either
//! side attaches to the other's list by name.
//!
//! The segment holds, in the platform's byte order and with every part 8-byte aligned:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | the number of items `N` (`q`) |
//! | `(N + 1) * 8` | the offset of each item's slot from the start of the data area, and the data area's end (`q` each) |
//! | `K` | the data area: one slot per item, 8 bytes, or for a `str`/`bytes` its UTF-8 length rounded up to the next multiple of 8 (at least one NUL more) |
//! | `N * 8` | each item's `struct` format, NUL-padded: `q`, `d`, `xxxxxxx?` (bool), `xxxxxx?x` (None), `<n>s` |
//! | `N` | each item's back-transform code (`b`): 0 a number or bool, 1 `str`, 2 `bytes`, 3 `None` |

use std::fmt;

use serde::{Deserialize, Serialize};

use super::SharedMemory;
use crate::error::{Error, Result};

/// One value of a [`ShareableList`]: the types CPython's `ShareableList` stores.
///
/// Equality is Python's `==`, which [`count`](ShareableList::count) and
/// [`index`](ShareableList::index) use: numbers compare by value across kinds (`Int(1)`,
/// `Float(1.0)` and `Bool(true)` are equal), a `Str` never equals a `Bytes`, and a `NaN`
/// equals nothing.
#[derive(Debug, Clone)]
pub enum Item {
    /// Python's `int`, stored as a signed 64-bit integer (`q`).
    Int(i64),
    /// Python's `float` (`d`).
    Float(f64),
    /// Python's `bool` (`xxxxxxx?`).
    Bool(bool),
    /// Python's `str`, stored as UTF-8 (`<n>s`). Trailing NUL characters are lost, as in
    /// CPython (which pads a slot with NULs and strips them when reading).
    Str(String),
    /// Python's `bytes` (`<n>s`); trailing NUL bytes are lost, as with [`Str`](Item::Str).
    Bytes(Vec<u8>),
    /// Python's `None` (`xxxxxx?x`).
    None,
}

/// Every part of the segment is aligned to this many bytes.
const ALIGN: usize = 8;
/// The bytes of one item's format string.
const FORMAT_BYTES: usize = 8;
/// The largest `str`/`bytes` slot: its format (`<n>s`) must fit in 8 bytes, as CPython asserts.
const MAX_SLOT: usize = 9_999_999;

const INT: &str = "q";
const FLOAT: &str = "d";
const BOOL: &str = "xxxxxxx?";
const NONE: &str = "xxxxxx?x";

/// Back-transform codes: how a stored value becomes a Python value again.
const CODE_PLAIN: i8 = 0;
const CODE_STR: i8 = 1;
const CODE_BYTES: i8 = 2;
const CODE_NONE: i8 = 3;

impl Item {
    fn code(&self) -> i8 {
        match self {
            Item::Int(_) | Item::Float(_) | Item::Bool(_) => CODE_PLAIN,
            Item::Str(_) => CODE_STR,
            Item::Bytes(_) => CODE_BYTES,
            Item::None => CODE_NONE,
        }
    }

    /// The stored bytes of a `str` or `bytes`.
    fn text(&self) -> Option<&[u8]> {
        match self {
            Item::Str(s) => Some(s.as_bytes()),
            Item::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The fixed format of a non-text item.
    fn fixed_format(&self) -> &'static str {
        match self {
            Item::Int(_) => INT,
            Item::Float(_) => FLOAT,
            Item::Bool(_) => BOOL,
            _ => NONE,
        }
    }

    /// The 8 bytes a non-text item is stored as.
    fn fixed_bytes(&self) -> [u8; 8] {
        match self {
            Item::Int(i) => i.to_ne_bytes(),
            Item::Float(f) => f.to_ne_bytes(),
            Item::Bool(b) => [0, 0, 0, 0, 0, 0, 0, u8::from(*b)],
            _ => [0; 8],
        }
    }

    /// The slot a new list gives this item (CPython's rule: a `str`/`bytes` of `n` bytes gets
    /// `8 * (n / 8 + 1)`).
    fn slot_size(&self) -> Result<usize> {
        match self.text() {
            None => Ok(ALIGN),
            Some(t) => {
                let size = ALIGN * (t.len() / ALIGN + 1);
                if size > MAX_SLOT {
                    return Err(Error::InvalidArgument(format!(
                        "a ShareableList item holds at most {MAX_SLOT} bytes; this one has {}",
                        t.len()
                    )));
                }
                Ok(size)
            }
        }
    }

    /// The number of a number or bool, for Python's equality across numeric kinds.
    fn number(&self) -> Option<Number> {
        match *self {
            Item::Int(i) => Some(Number::Int(i)),
            Item::Bool(b) => Some(Number::Int(i64::from(b))),
            Item::Float(f) => Some(Number::Float(f)),
            _ => None,
        }
    }
}

enum Number {
    Int(i64),
    Float(f64),
}

fn int_equals_float(i: i64, f: f64) -> bool {
    // Exact, as Python compares: `f as i128` saturates, and no saturated value is an i64.
    f.is_finite() && f.fract() == 0.0 && f as i128 == i128::from(i)
}

impl PartialEq for Item {
    /// Python's `==` (see [`Item`]).
    fn eq(&self, other: &Item) -> bool {
        if let (Some(a), Some(b)) = (self.number(), other.number()) {
            return match (a, b) {
                (Number::Int(a), Number::Int(b)) => a == b,
                (Number::Float(a), Number::Float(b)) => a == b,
                (Number::Int(i), Number::Float(f)) | (Number::Float(f), Number::Int(i)) => {
                    int_equals_float(i, f)
                }
            };
        }
        match (self, other) {
            (Item::Str(a), Item::Str(b)) => a == b,
            (Item::Bytes(a), Item::Bytes(b)) => a == b,
            (Item::None, Item::None) => true,
            _ => false,
        }
    }
}

macro_rules! item_from {
    ($($t:ty => $v:ident $(as $via:ty)?),* $(,)?) => {$(
        impl From<$t> for Item {
            fn from(value: $t) -> Item {
                Item::$v(value $(as $via)?.into())
            }
        }
    )*};
}

item_from!(
    i64 => Int, i32 => Int, u32 => Int, i16 => Int, u16 => Int, i8 => Int, u8 => Int,
    f64 => Float, f32 => Float, bool => Bool,
    String => Str, &str => Str, Vec<u8> => Bytes, &[u8] => Bytes,
);

impl From<()> for Item {
    /// `()` is Python's `None`.
    fn from(_: ()) -> Item {
        Item::None
    }
}

impl<T: Into<Item>> From<Option<T>> for Item {
    /// `None` is Python's `None`; `Some(v)` is `v`.
    fn from(value: Option<T>) -> Item {
        value.map_or(Item::None, Into::into)
    }
}

/// Where the parts of a list lie in its segment.
#[derive(Debug, Clone)]
struct Layout {
    len: usize,
    /// `len + 1` offsets into the data area: item `i`'s slot is `offsets[i]..offsets[i + 1]`.
    offsets: Vec<usize>,
}

impl Layout {
    fn data_start(&self) -> usize {
        (self.len + 2) * 8
    }
    fn formats_at(&self) -> usize {
        self.data_start() + self.offsets[self.len]
    }
    fn codes_at(&self) -> usize {
        self.formats_at() + FORMAT_BYTES * self.len
    }
    fn size(&self) -> usize {
        self.codes_at() + self.len
    }
    /// Item `i`'s slot: its first byte in the segment and its size.
    fn slot(&self, i: usize) -> (usize, usize) {
        (
            self.data_start() + self.offsets[i],
            self.offsets[i + 1] - self.offsets[i],
        )
    }
}

/// A fixed-length list of ints, floats, bools, strs, bytes and Nones in shared memory
/// (Python's `multiprocessing.shared_memory.ShareableList`), in CPython's layout: a Python
/// program attaches to it by name with `ShareableList(name=...)`, and
/// [`attach`](ShareableList::attach) opens one a Python program made.
///
/// The length is fixed at creation, and so is each item's room: 8 bytes for a number, bool or
/// None, and for a `str`/`bytes` its length rounded up to the next multiple of 8 (with at least
/// one byte to spare). An item may be replaced by one of any kind that fits its room. As with
/// [`SharedMemory`], access from several processes must be synchronised (a lock, or a hand-over
/// through a pipe); dropping the list closes it, and one process [`unlink`](Self::unlink)s it.
///
/// ```standalone_crate
/// use multiprocess::Process;
/// use multiprocess::shared_memory::{Item, ShareableList};
///
/// fn child(name: String) {
///     let mut list = ShareableList::attach(&name).unwrap();
///     list.set(1, "changed").unwrap();
///     list.set(2, Item::None).unwrap();
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
/// let list = ShareableList::new(
///     [Item::Int(7), Item::from("original"), Item::Float(2.5), Item::Bool(true)],
///     None,
/// )?;
/// assert_eq!(list.format()?, "q16sdxxxxxxx?"); // "original": 8 bytes and a NUL, in 16
/// let mut p = Process::new(child, (list.name().to_owned(),));
/// p.start()?;
/// p.join()?;
/// assert_eq!(list.get(1)?, Item::from("changed"));
/// assert_eq!(list.get(2)?, Item::None);
/// assert_eq!(list.to_vec()?.len(), 4);
/// list.unlink()?;
/// # Ok(()) }
/// ```
pub struct ShareableList {
    shm: SharedMemory,
    layout: Layout,
}

impl ShareableList {
    /// Creates a list holding `items` in a new segment (Python's `ShareableList(sequence,
    /// name=name)`): `name: None` generates one, as [`SharedMemory::create`] does. Tracked by
    /// the resource tracker like any segment.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `str`/`bytes` over 9,999,999 bytes (its format would
    /// not fit CPython's 8 bytes); otherwise as [`SharedMemory::create`].
    pub fn new<I>(items: I, name: Option<&str>) -> Result<ShareableList>
    where
        I: IntoIterator,
        I::Item: Into<Item>,
    {
        let items: Vec<Item> = items.into_iter().map(Into::into).collect();
        let mut offsets = Vec::with_capacity(items.len() + 1);
        offsets.push(0);
        let mut end = 0usize;
        for item in &items {
            end += item.slot_size()?;
            offsets.push(end);
        }
        let layout = Layout {
            len: items.len(),
            offsets,
        };
        let shm = SharedMemory::create(name, layout.size())?;
        let mut list = ShareableList { shm, layout };
        let header: Vec<u8> = std::iter::once(list.layout.len)
            .chain(list.layout.offsets.iter().copied())
            .flat_map(|n| (n as i64).to_ne_bytes())
            .collect();
        list.write(0, &header)?;
        for (i, item) in items.iter().enumerate() {
            let (_, room) = list.layout.slot(i);
            let format = match item.text() {
                Some(_) => format!("{room}s"),
                None => item.fixed_format().to_owned(),
            };
            list.store(i, &format, item)?;
        }
        Ok(list)
    }

    /// Attaches to the list in segment `name` (Python's `ShareableList(name=name)`), made by
    /// this library or by CPython. Tracked, as [`SharedMemory::attach`].
    ///
    /// # Errors
    /// As [`SharedMemory::attach`]; [`Error::Codec`] if the segment does not hold a list in
    /// CPython's layout.
    pub fn attach(name: &str) -> Result<ShareableList> {
        Self::from_shm(SharedMemory::attach(name)?)
    }

    /// Reads the layout of the list in `shm`, checking that it fits the segment.
    fn from_shm(shm: SharedMemory) -> Result<ShareableList> {
        let corrupt = |why: &str| {
            Error::Codec(format!(
                "shared memory {:?} does not hold a ShareableList: {why}",
                shm.name()
            ))
        };
        let buf = shm.buf();
        let word = |at: usize| -> Option<i64> {
            let bytes = buf.get(at..at.checked_add(8)?)?;
            Some(i64::from_ne_bytes(bytes.try_into().ok()?))
        };
        let len = word(0).ok_or_else(|| corrupt("too small"))?;
        let len = usize::try_from(len).map_err(|_| corrupt("a negative length"))?;
        if len > buf.len() / 8 {
            return Err(corrupt("a length beyond the segment"));
        }
        let mut offsets = Vec::with_capacity(len + 1);
        for i in 0..=len {
            let at = word(8 * (i + 1)).ok_or_else(|| corrupt("the offsets run past its end"))?;
            let at = usize::try_from(at).map_err(|_| corrupt("a negative offset"))?;
            if offsets.last().is_some_and(|&prev| at < prev) || at > buf.len() {
                return Err(corrupt("offsets out of order"));
            }
            offsets.push(at);
        }
        let layout = Layout { len, offsets };
        let fits = (len + 2)
            .checked_mul(8)
            .and_then(|d| d.checked_add(layout.offsets[len]))
            .and_then(|f| f.checked_add((FORMAT_BYTES + 1) * len))
            .is_some_and(|size| size <= buf.len());
        if !fits {
            return Err(corrupt("its parts run past its end"));
        }
        Ok(ShareableList { shm, layout })
    }

    /// The segment's name (Python's `shm.name`).
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The segment (Python's `shm`).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// The number of items (Python's `len()`), fixed at creation.
    pub fn len(&self) -> usize {
        self.layout.len
    }

    /// True for a list of no items.
    pub fn is_empty(&self) -> bool {
        self.layout.len == 0
    }

    /// Item `i` (Python's `list[i]`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `i` is out of range (Python's `IndexError`);
    /// [`Error::Codec`] if another process stored what CPython could not read back.
    pub fn get(&self, i: usize) -> Result<Item> {
        self.check_index(i, "index out of range")?;
        let format = self.format_of(i)?;
        let code = self.read(self.layout.codes_at() + i, 1)?[0] as i8;
        let (at, room) = self.layout.slot(i);
        let bad = || {
            Error::Codec(format!(
                "item {i} of ShareableList {:?} has format {format:?} and code {code}, which \
                 CPython does not write",
                self.name()
            ))
        };
        let fixed = || -> Result<[u8; 8]> {
            if room < 8 {
                return Err(bad());
            }
            self.read(at, 8)?.try_into().map_err(|_| bad())
        };
        Ok(match (code, format.as_str()) {
            (CODE_NONE, _) => Item::None,
            (CODE_PLAIN, INT) => Item::Int(i64::from_ne_bytes(fixed()?)),
            (CODE_PLAIN, FLOAT) => Item::Float(f64::from_ne_bytes(fixed()?)),
            (CODE_PLAIN, BOOL) => Item::Bool(fixed()?[7] != 0),
            (CODE_STR | CODE_BYTES, f) => {
                let n = text_size(f).filter(|&n| n <= room).ok_or_else(bad)?;
                let bytes = self.read(at, n)?;
                let kept = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                let bytes = bytes[..kept].to_vec();
                if code == CODE_BYTES {
                    Item::Bytes(bytes)
                } else {
                    Item::Str(String::from_utf8(bytes).map_err(|e| {
                        Error::Codec(format!(
                            "item {i} of ShareableList {:?} is not UTF-8: {e}",
                            self.name()
                        ))
                    })?)
                }
            }
            _ => return Err(bad()),
        })
    }

    /// Replaces item `i` (Python's `list[i] = value`). The new item may be of any kind, as
    /// long as it fits the item's room (see [`ShareableList`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `i` is out of range (Python's `IndexError`), or for a
    /// `str`/`bytes` longer than the item's room (Python's `ValueError: bytes/str item
    /// exceeds available storage`).
    pub fn set(&mut self, i: usize, item: impl Into<Item>) -> Result<()> {
        let item = item.into();
        self.check_index(i, "assignment index out of range")?;
        let (_, room) = self.layout.slot(i);
        let current = self.format_of(i)?;
        let format = match item.text() {
            Some(t) if t.len() > room => {
                return Err(Error::InvalidArgument(
                    "bytes/str item exceeds available storage".into(),
                ));
            }
            // CPython keeps a text item's format (which is its room, in every list it makes).
            Some(t) if text_size(&current).is_some_and(|n| n >= t.len() && n <= room) => current,
            Some(_) => format!("{room}s"),
            None => item.fixed_format().to_owned(),
        };
        if item.text().is_none() && room < 8 {
            return Err(Error::InvalidArgument(format!(
                "item {i} has only {room} bytes of room"
            )));
        }
        self.store(i, &format, &item)
    }

    /// Writes item `i`'s format, code and value (in CPython's order).
    fn store(&mut self, i: usize, format: &str, item: &Item) -> Result<()> {
        let mut f = [0u8; FORMAT_BYTES];
        f[..format.len()].copy_from_slice(format.as_bytes());
        self.write(self.layout.formats_at() + FORMAT_BYTES * i, &f)?;
        self.write(self.layout.codes_at() + i, &[item.code() as u8])?;
        let (at, _) = self.layout.slot(i);
        match item.text() {
            Some(t) => {
                let n = text_size(format).unwrap_or(t.len());
                let mut value = t.to_vec();
                value.resize(n, 0);
                self.write(at, &value)
            }
            None => self.write(at, &item.fixed_bytes()),
        }
    }

    /// The `struct` format of every item, concatenated (Python's `format`), e.g.
    /// `"q8sdxxxxxxx?"`.
    ///
    /// # Errors
    /// [`Error::Codec`] if a stored format is not text.
    pub fn format(&self) -> Result<String> {
        (0..self.len()).map(|i| self.format_of(i)).collect()
    }

    /// How many items equal `value` (Python's `count`, with Python's `==`: see [`Item`]).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn count(&self, value: &Item) -> Result<usize> {
        let mut n = 0;
        for item in self {
            n += usize::from(item? == *value);
        }
        Ok(n)
    }

    /// The position of the first item equal to `value` (Python's `index`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if there is none (Python's `ValueError`); as
    /// [`get`](Self::get).
    pub fn index(&self, value: &Item) -> Result<usize> {
        for (i, item) in self.iter().enumerate() {
            if item? == *value {
                return Ok(i);
            }
        }
        Err(Error::InvalidArgument(format!(
            "{value:?} not in this container"
        )))
    }

    /// The items in order, each read when the iterator reaches it.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            list: self,
            next: 0,
        }
    }

    /// All items, read now (Python's `list(sl)`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Result<Vec<Item>> {
        self.iter().collect()
    }

    /// Unlinks the segment (Python's `sl.shm.unlink()`): see [`SharedMemory::unlink`].
    ///
    /// # Errors
    /// As [`SharedMemory::unlink`].
    pub fn unlink(&self) -> Result<()> {
        self.shm.unlink()
    }

    fn check_index(&self, i: usize, message: &str) -> Result<()> {
        if i >= self.len() {
            return Err(Error::InvalidArgument(format!(
                "{message}: {i} (length {})",
                self.len()
            )));
        }
        Ok(())
    }

    /// Item `i`'s format, without its NUL padding.
    fn format_of(&self, i: usize) -> Result<String> {
        let raw = self.read(self.layout.formats_at() + FORMAT_BYTES * i, FORMAT_BYTES)?;
        let kept = raw.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        String::from_utf8(raw[..kept].to_vec()).map_err(|_| {
            Error::Codec(format!(
                "item {i} of ShareableList {:?} has a format that is not text",
                self.name()
            ))
        })
    }

    fn read(&self, at: usize, n: usize) -> Result<&[u8]> {
        self.shm.buf().get(at..at + n).ok_or_else(|| self.closed())
    }

    fn write(&mut self, at: usize, bytes: &[u8]) -> Result<()> {
        let closed = self.closed();
        self.shm
            .buf_mut()
            .get_mut(at..at + bytes.len())
            .ok_or(closed)?
            .copy_from_slice(bytes);
        Ok(())
    }

    fn closed(&self) -> Error {
        Error::state(format!(
            "ShareableList {:?}: its segment is closed",
            self.name()
        ))
    }
}

/// The size in a `<n>s` format (`s` alone is 1, as in `struct`).
fn text_size(format: &str) -> Option<usize> {
    let digits = format.strip_suffix('s')?;
    if digits.is_empty() {
        return Some(1);
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The items of a [`ShareableList`], each read when reached ([`ShareableList::iter`]).
#[derive(Debug)]
pub struct Iter<'a> {
    list: &'a ShareableList,
    next: usize,
}

impl Iterator for Iter<'_> {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Result<Item>> {
        if self.next >= self.list.len() {
            return None;
        }
        self.next += 1;
        Some(self.list.get(self.next - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.len() - self.next;
        (left, Some(left))
    }
}

impl<'a> IntoIterator for &'a ShareableList {
    type Item = Result<Item>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Debug for ShareableList {
    /// Python's repr: `ShareableList([Int(1), Str("a")], name="psm_0123abcd")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_vec() {
            Ok(items) => write!(f, "ShareableList({items:?}, name={:?})", self.name()),
            Err(e) => write!(f, "ShareableList(<{e}>, name={:?})", self.name()),
        }
    }
}

impl Serialize for ShareableList {
    /// By name, as CPython pickles it: the receiver attaches.
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    /// Attaches to the named list.
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(deserializer)?;
        ShareableList::from_shm(shm).map_err(|e| crate::wire::custom_de(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_equality() {
        assert_eq!(Item::Int(1), Item::Float(1.0));
        assert_eq!(Item::Bool(true), Item::Int(1));
        assert_eq!(Item::Bool(false), Item::Float(-0.0));
        assert_ne!(Item::Int(i64::MAX), Item::Float(i64::MAX as f64));
        assert_ne!(Item::Float(f64::NAN), Item::Float(f64::NAN));
        assert_ne!(Item::from("a"), Item::from(&b"a"[..]));
        assert_ne!(Item::None, Item::Int(0));
        assert_eq!(Item::None, Item::from(None::<i64>));
    }

    #[test]
    fn slot_sizes_are_cpythons() {
        assert_eq!(Item::from("").slot_size().unwrap(), 8);
        assert_eq!(Item::from("1234567").slot_size().unwrap(), 8);
        assert_eq!(Item::from("12345678").slot_size().unwrap(), 16);
        assert_eq!(Item::Float(1.0).slot_size().unwrap(), 8);
        assert_eq!(text_size("16s"), Some(16));
        assert_eq!(text_size("s"), Some(1));
        assert_eq!(text_size("q"), None);
        assert_eq!(text_size("-1s"), None);
    }
}
