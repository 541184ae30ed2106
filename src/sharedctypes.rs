//! Plain-old-data values and arrays in shared memory: Python's `Value`, `Array`, `RawValue` and
//! `RawArray` (`multiprocessing.sharedctypes`).
//!
//! The element type is any [`Pod`] type (integers, floats, arrays of them, and
//! `#[derive(Pod, Zeroable)]` `#[repr(C)]` structs): every bit pattern is a valid value, so what
//! another process writes can never make a value invalid. [`Value`] and [`Array`] come with a
//! [`Lock`]; their [`lock`](Value::lock) guard hands out `&mut T` / `&mut [T]`, and
//! [`get`](Value::get)/[`set`](Value::set) each take the lock, like Python's `.value`. The raw
//! variants have no lock and copy values in and out (volatile reads and writes), so concurrent
//! access can tear a value but never misbehave otherwise.

use std::marker::PhantomData;
use std::sync::Arc;

pub use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::synchronize::{Lock, LockGuard};
use crate::sys::Region;

/// `len` elements of `T` in a shared region.
struct Cells<T> {
    region: Arc<Region>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for Cells<T> {
    fn clone(&self) -> Self {
        Cells {
            region: self.region.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Cells<T> {
    /// `len` zeroed elements.
    fn zeroed(len: usize) -> Result<Self> {
        const { assert!(std::mem::align_of::<T>() <= 4096) };
        let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
            Error::InvalidArgument(format!("an array of {len} elements is too large"))
        })?;
        let region = Region::new(bytes)
            .map_err(|e| Error::io(format!("creating {bytes} bytes of shared memory"), e))?;
        Ok(Cells {
            region: Arc::new(region),
            len,
            _t: PhantomData,
        })
    }

    fn from_slice(values: &[T]) -> Result<Self> {
        let cells = Self::zeroed(values.len())?;
        for (i, v) in values.iter().enumerate() {
            cells.write(i, *v);
        }
        Ok(cells)
    }

    fn ptr(&self) -> *mut T {
        self.region.base().cast()
    }

    /// The range `range` stands for, checked against the length (Python's `a[i:j]`, without
    /// its clamping: an end past the length is an error here, as a slice of a Rust slice is).
    fn span(&self, range: impl std::ops::RangeBounds<usize>) -> Result<std::ops::Range<usize>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len,
        };
        if start > end || end > self.len {
            return Err(Error::InvalidArgument(format!(
                "slice {start}..{end} out of range (length {})",
                self.len
            )));
        }
        Ok(start..end)
    }

    fn check(&self, i: usize) -> Result<()> {
        if i < self.len {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "array index {i} out of range (length {})",
                self.len
            )))
        }
    }

    /// Copies element `i` out. `i < len`.
    fn read(&self, i: usize) -> T {
        assert!(i < self.len);
        // SAFETY: `i < len`, the region holds `len` elements and is page-aligned (so aligned
        // for `T`, checked at compile time); any bit pattern is a valid `T` (`Pod`). A volatile
        // copy: another process may write it concurrently.
        unsafe { self.ptr().add(i).read_volatile() }
    }

    /// Copies `v` into element `i`. `i < len`.
    fn write(&self, i: usize, v: T) {
        assert!(i < self.len);
        // SAFETY: as in `read`; shared memory outside Rust's aliasing model, written with a
        // volatile copy.
        unsafe { self.ptr().add(i).write_volatile(v) }
    }

    /// The elements as a slice.
    ///
    /// # Safety
    /// No other process or thread may access the elements while the slice lives (the caller
    /// holds the object's lock, and every access goes through that lock).
    #[allow(clippy::mut_from_ref)] // exclusivity comes from the lock, as with a Mutex
    unsafe fn slice_mut(&self) -> &mut [T] {
        // SAFETY: in bounds and aligned as in `read`; exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

/// How `Cells` travel: the region, the length, and the element size (checked on arrival).
impl<T: Pod> Serialize for Cells<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (
            &*self.region,
            self.len as u64,
            std::mem::size_of::<T>() as u64,
        )
            .serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Cells<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (region, len, size) = <(Region, u64, u64)>::deserialize(deserializer)?;
        let fits = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_mul(std::mem::size_of::<T>()))
            .is_some_and(|bytes| bytes <= region.len());
        if size != std::mem::size_of::<T>() as u64 || !fits {
            return Err(crate::wire::custom_de(format!(
                "shared array of {len} elements of {size} bytes received as elements of {} \
                 bytes (in {} bytes of memory)",
                std::mem::size_of::<T>(),
                region.len()
            )));
        }
        Ok(Cells {
            region: Arc::new(region),
            len: len as usize,
            _t: PhantomData,
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// A `T` in shared memory without a lock: Python's `RawValue`.
///
/// Each `get` and `set` copies the whole value; nothing orders them between processes, so use
/// it for a value one process writes and others read, or guard it with a [`Lock`] of your own
/// (or take a [`Value`]).
///
/// ```standalone_crate
/// use multiprocess::{Process, RawValue};
///
/// fn answer(v: RawValue<f64>) {
///     v.set(42.5);
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let v = RawValue::new(0.0f64)?; // Python: RawValue('d', 0.0)
/// let mut p = Process::new(answer, (v.clone(),));
/// p.start()?;
/// p.join()?;
/// assert_eq!(v.get(), 42.5);
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "T: Pod")]
pub struct RawValue<T: Pod> {
    cells: Cells<T>,
}

impl<T: Pod> RawValue<T> {
    /// A shared `value`.
    pub fn new(value: T) -> Result<Self> {
        Ok(RawValue {
            cells: Cells::from_slice(&[value])?,
        })
    }

    /// A copy of the value.
    pub fn get(&self) -> T {
        self.cells.read(0)
    }

    /// Overwrites the value.
    pub fn set(&self, value: T) {
        self.cells.write(0, value)
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawValue({:?})", self.get())
    }
}

/// `len` `T`s in shared memory without a lock: Python's `RawArray`.
///
/// Children given clones of it write disjoint parts; the parent reads them after joining:
///
/// ```standalone_crate
/// use multiprocess::{Process, RawArray};
///
/// /// Fills `a[start..start + n]` with squares of the indices.
/// fn squares(a: RawArray<u64>, start: usize, n: usize) {
///     let values: Vec<u64> = (start..start + n).map(|i| (i * i) as u64).collect();
///     a.set_slice(start, &values).unwrap();
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let a = RawArray::<u64>::new(8)?; // Python: RawArray('Q', 8)
/// let mut children = [
///     Process::new(squares, (a.clone(), 0, 4)),
///     Process::new(squares, (a.clone(), 4, 4)),
/// ];
/// for p in &mut children {
///     p.start()?;
/// }
/// for p in &mut children {
///     p.join()?;
/// }
/// assert_eq!(a.to_vec(), [0, 1, 4, 9, 16, 25, 36, 49]);
/// assert_eq!(a.get_slice(2..4)?, [4, 9]); // a[2:4]
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "T: Pod")]
pub struct RawArray<T: Pod> {
    cells: Cells<T>,
}

impl<T: Pod> RawArray<T> {
    /// `len` zeroed elements.
    pub fn new(len: usize) -> Result<Self> {
        Ok(RawArray {
            cells: Cells::zeroed(len)?,
        })
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Result<Self> {
        Ok(RawArray {
            cells: Cells::from_slice(values)?,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.cells.len == 0
    }

    /// A copy of element `i`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `i` is out of range (Python's `IndexError`); as
    /// [`lock`](Array::lock).
    pub fn get(&self, i: usize) -> Result<T> {
        self.cells.check(i)?;
        Ok(self.cells.read(i))
    }

    /// Overwrites element `i`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `i` is out of range.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.cells.check(i)?;
        self.cells.write(i, value);
        Ok(())
    }

    /// A copy of all elements.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.cells.len).map(|i| self.cells.read(i)).collect()
    }

    /// A copy of the elements in `range` (Python's `a[i:j]`).
    ///
    /// ```
    /// # fn main() -> multiprocess::Result<()> {
    /// let a = multiprocess::RawArray::from_slice(&[1u8, 2, 3, 4])?;
    /// a.set_slice(1, &[20, 30])?; // Python's a[1:3] = [20, 30]
    /// assert_eq!(a.get_slice(1..)?, [20, 30, 4]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the range is not within the array.
    pub fn get_slice(&self, range: impl std::ops::RangeBounds<usize>) -> Result<Vec<T>> {
        Ok(self
            .cells
            .span(range)?
            .map(|i| self.cells.read(i))
            .collect())
    }

    /// Overwrites the elements from `start` on with `values` (Python's
    /// `a[start:start + len(values)] = values`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when they do not fit within the array.
    pub fn set_slice(&self, start: usize, values: &[T]) -> Result<()> {
        let span = self.cells.span(start..start.saturating_add(values.len()))?;
        for (i, v) in span.zip(values) {
            self.cells.write(i, *v);
        }
        Ok(())
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawArray({:?})", self.to_vec())
    }
}

// ---------------------------------------------------------------------------------------------

/// A `T` in shared memory with a [`Lock`]: Python's `Value(typecode, value, lock=True)`.
///
/// ```standalone_crate
/// # fn main() -> multiprocess::Result<()> {
/// # multiprocess::init_test();
/// let counter = multiprocess::Value::new(0i64)?;
/// *counter.lock()? += 1; // read-modify-write under the lock
/// assert_eq!(counter.get()?, 1);
/// # Ok(()) }
/// ```
///
/// Python's default lock is an `RLock`; here it is a [`Lock`], because the guard hands out
/// `&mut T` and a re-entrant `get()` under it would read (a `set()` write) memory that a live
/// `&mut T` refers to, which safe Rust must not allow. So `get`, `set` and `lock` called by a
/// thread that holds the lock already (its guard is alive, or it took
/// [`get_lock`](Value::get_lock) itself) fail with [`Error::State`] at once, where they would
/// wait for themselves forever: use the guard.
///
/// ```standalone_crate
/// # fn main() -> multiprocess::Result<()> {
/// # multiprocess::init_test();
/// let v = multiprocess::Value::new(1u32)?;
/// let mut guard = v.lock()?;
/// *guard += 1;
/// assert!(matches!(v.get(), Err(multiprocess::Error::State(_)))); // not a deadlock
/// assert_eq!(*guard, 2); // read through the guard instead
/// drop(guard);
/// assert_eq!(v.get()?, 2);
/// # Ok(()) }
/// ```
///
/// A counter several processes add to (each addition under the value's lock):
///
/// ```standalone_crate
/// use multiprocess::{Process, Value};
///
/// fn add(total: Value<u64>, times: u64) {
///     for _ in 0..times {
///         *total.lock().unwrap() += 1;
///     }
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let total = Value::new(0u64)?;
/// let mut children: Vec<Process> = (0..2).map(|_| Process::new(add, (total.clone(), 500))).collect();
/// for p in &mut children {
///     p.start()?;
/// }
/// for p in &mut children {
///     p.join()?;
/// }
/// assert_eq!(total.get()?, 1000);
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "T: Pod")]
pub struct Value<T: Pod> {
    cells: Cells<T>,
    lock: Lock,
}

impl<T: Pod> Value<T> {
    /// A shared `value` with a new lock.
    pub fn new(value: T) -> Result<Self> {
        Self::with_lock(value, Lock::new()?)
    }

    /// A shared `value` guarded by `lock` (which may guard other objects too).
    pub fn with_lock(value: T, lock: Lock) -> Result<Self> {
        Ok(Value {
            cells: Cells::from_slice(&[value])?,
            lock,
        })
    }

    /// The lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Takes the lock; the guard dereferences to the value.
    ///
    /// # Errors
    /// [`Error::State`] when the calling thread holds the lock already (see [`Value`]);
    /// [`Error::OwnerDied`] as [`Lock::acquire`].
    pub fn lock(&self) -> Result<ValueGuard<'_, T>> {
        let guard = self.lock.guard_for("Value")?;
        // SAFETY: every access to a locked Value's memory goes through its lock (the type has
        // no unlocked accessor), and we hold it until the returned guard drops.
        let value = unsafe { &mut self.cells.slice_mut()[0] };
        Ok(ValueGuard {
            value,
            _guard: guard,
        })
    }

    /// A copy of the value, read under the lock.
    ///
    /// # Errors
    /// As [`lock`](Value::lock).
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Overwrites the value under the lock.
    ///
    /// # Errors
    /// As [`lock`](Value::lock).
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Value<T> {
    /// Python's repr: `<Synchronized wrapper for ...>` (reads without the lock).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<Synchronized wrapper for {:?}>", self.cells.read(0))
    }
}

/// The value of a locked [`Value`]; the lock is released when the guard drops.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, T> {
    value: &'a mut T,
    _guard: LockGuard<'a>,
}

impl<T> std::ops::Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T> std::ops::DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

/// `len` `T`s in shared memory with a [`Lock`]: Python's `Array(typecode, size, lock=True)`.
///
/// As with [`Value`], its accessors called by a thread that holds its lock already fail with
/// [`Error::State`] instead of waiting for themselves.
///
/// ```standalone_crate
/// use multiprocess::{Array, Process};
///
/// /// Negates every item, under the array's lock.
/// fn negate(a: Array<i32>) {
///     let mut items = a.lock().unwrap();
///     for x in items.iter_mut() {
///         *x = -*x;
///     }
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let a = Array::<i32>::new(4)?;
/// for i in 0..4 {
///     a.set(i, i as i32)?;
/// }
/// let mut p = Process::new(negate, (a.clone(),));
/// p.start()?;
/// p.join()?;
/// assert_eq!(a.to_vec()?, [0, -1, -2, -3]);
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "T: Pod")]
pub struct Array<T: Pod> {
    cells: Cells<T>,
    lock: Lock,
}

impl<T: Pod> Array<T> {
    /// `len` zeroed elements with a new lock.
    pub fn new(len: usize) -> Result<Self> {
        Ok(Array {
            cells: Cells::zeroed(len)?,
            lock: Lock::new()?,
        })
    }

    /// A copy of `values` with a new lock.
    pub fn from_slice(values: &[T]) -> Result<Self> {
        Self::from_slice_with_lock(values, Lock::new()?)
    }

    /// A copy of `values` guarded by `lock`.
    pub fn from_slice_with_lock(values: &[T], lock: Lock) -> Result<Self> {
        Ok(Array {
            cells: Cells::from_slice(values)?,
            lock,
        })
    }

    /// The lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.cells.len == 0
    }

    /// Takes the lock; the guard dereferences to the elements.
    ///
    /// # Errors
    /// [`Error::State`] when the calling thread holds the lock already (see [`Array`]);
    /// [`Error::OwnerDied`] as [`Lock::acquire`].
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>> {
        let guard = self.lock.guard_for("Array")?;
        // SAFETY: as in `Value::lock`: all access goes through the lock, which we hold.
        let values = unsafe { self.cells.slice_mut() };
        Ok(ArrayGuard {
            values,
            _guard: guard,
        })
    }

    /// A copy of element `i`, under the lock.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `i` is out of range (Python's `IndexError`).
    pub fn get(&self, i: usize) -> Result<T> {
        self.cells.check(i)?;
        Ok(self.lock()?[i])
    }

    /// Overwrites element `i`, under the lock.
    ///
    /// # Errors
    /// As [`get`](Array::get).
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.cells.check(i)?;
        self.lock()?[i] = value;
        Ok(())
    }

    /// A copy of all elements, under the lock.
    ///
    /// # Errors
    /// As [`lock`](Array::lock).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }

    /// A copy of the elements in `range`, read under the lock (Python's `a[i:j]`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the range is not within the array; as
    /// [`lock`](Array::lock).
    pub fn get_slice(&self, range: impl std::ops::RangeBounds<usize>) -> Result<Vec<T>> {
        let span = self.cells.span(range)?;
        Ok(self.lock()?[span].to_vec())
    }

    /// Overwrites the elements from `start` on with `values`, under the lock (Python's
    /// `a[start:start + len(values)] = values`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when they do not fit within the array; as
    /// [`lock`](Array::lock).
    pub fn set_slice(&self, start: usize, values: &[T]) -> Result<()> {
        let span = self.cells.span(start..start.saturating_add(values.len()))?;
        self.lock()?[span].copy_from_slice(values);
        Ok(())
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Array<T> {
    /// Python's repr: `<SynchronizedArray wrapper for ...>` (reads without the lock).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let values: Vec<T> = (0..self.cells.len).map(|i| self.cells.read(i)).collect();
        write!(f, "<SynchronizedArray wrapper for {values:?}>")
    }
}

/// The elements of a locked [`Array`]; the lock is released when the guard drops.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    values: &'a mut [T],
    _guard: LockGuard<'a>,
}

impl<T> std::ops::Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.values
    }
}

impl<T> std::ops::DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.values
    }
}
