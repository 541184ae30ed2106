//! Handles passed between processes: to a child at its start, with a message over a stream
//! (the receiver duplicates them out of the sender), and why they cannot go through a queue.

use std::io::{Read, Write};

use super::*;

/// Handles already duplicated into one child: their values there, to send over its channel.
pub(crate) struct Transfer(Vec<u64>);

/// Whether [`transfer_handles`] needs the child's process: on Windows it does.
pub(crate) const HANDLES_NEED_CHILD: bool = true;

/// Duplicates `handles` into `child` (the receiver must be known on Windows: `DuplicateHandle`
/// writes into its handle table; `None` fails unless there are none), closing ours.
pub(crate) fn transfer_handles(
    child: Option<&ProcHandle>,
    handles: Vec<OwnedHandle>,
) -> io::Result<Transfer> {
    if handles.is_empty() {
        return Ok(Transfer(Vec::new()));
    }
    let Some(child) = child else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "handles for a child that does not exist yet",
        ));
    };
    let mut values = Vec::with_capacity(handles.len());
    for h in handles {
        let mut theirs: HANDLE = std::ptr::null_mut();
        // SAFETY: duplicates our own valid handle into the child's process, whose handle we
        // hold; the value is only meaningful there.
        let ok = unsafe {
            DuplicateHandle(
                GetCurrentProcess(),
                h.as_raw_handle(),
                child.process.as_raw_handle(),
                &mut theirs,
                0,
                0,
                DUPLICATE_SAME_ACCESS,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        values.push(theirs as usize as u64);
    }
    Ok(Transfer(values))
}

/// Tells the child the values of the handles it now owns, as one frame.
pub(crate) fn send_transfer(channel: &Channel, transfer: Transfer) -> io::Result<()> {
    // Nothing to say: the child reads this frame only when its bootstrap announces handles,
    // and an unread frame would look to it like its parent hanging up.
    if transfer.0.is_empty() {
        return Ok(());
    }
    // A record of our own: the values, 8 bytes each; the child knows how many to expect.
    let bytes: Vec<u8> = transfer.0.iter().flat_map(|v| v.to_le_bytes()).collect();
    (&*channel).write_all(&bytes)
}

/// Reads what `channel` has (blocking until something), up to `buf.len()` bytes; `Ok(0)` is
/// end of file. Handles travel inside the stream here, so `arrived` stays empty.
pub(crate) fn recv_channel(
    channel: &Channel,
    buf: &mut [u8],
    _arrived: &mut std::collections::VecDeque<OwnedHandle>,
) -> io::Result<usize> {
    (&*channel).read(buf)
}

/// Receives the `count` handles sent with [`send_transfer`], of whose record `read` came with
/// earlier reads ([`recv_channel`]).
pub(crate) fn recv_handles(
    channel: &Channel,
    count: usize,
    read: &[u8],
    _arrived: &mut std::collections::VecDeque<OwnedHandle>,
) -> io::Result<Vec<OwnedHandle>> {
    let mut frame = vec![0u8; 8 * count];
    if read.len() > frame.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more handles than announced",
        ));
    }
    frame[..read.len()].copy_from_slice(read);
    (&*channel)
        .read_exact(&mut frame[read.len()..])
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("handles were lost in transit: {e}"),
            )
        })?;
    Ok(frame
        .chunks_exact(8)
        .map(|c| {
            let v = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            // SAFETY: the parent duplicated this handle into our process for us alone.
            unsafe { OwnedHandle::from_raw_handle(v as usize as HANDLE) }
        })
        .collect())
}

/// Handles do not travel through queues on Windows (there is no socket to keep them in flight
/// after their sender exits).
pub(crate) const HANDLES_PER_DATAGRAM: usize = 0;

/// Not on Windows (see [`HANDLES_PER_DATAGRAM`]).
pub(crate) fn handle_channel() -> io::Result<(OwnedHandle, OwnedHandle)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "values carrying OS handles cannot travel through a queue on Windows",
    ))
}

/// Not on Windows (see [`handle_channel`]).
pub(crate) fn send_handles_datagram(_: &OwnedHandle, _: Vec<OwnedHandle>) -> io::Result<()> {
    Err(handle_channel()
        .err()
        .unwrap_or_else(|| io::Error::other("unsupported")))
}

/// Not on Windows (see [`handle_channel`]).
pub(crate) fn recv_handles_datagram(_: &OwnedHandle, _: usize) -> io::Result<Vec<OwnedHandle>> {
    Err(handle_channel()
        .err()
        .unwrap_or_else(|| io::Error::other("unsupported")))
}

/// Every Windows stream can carry handles (see [`send_handles_on`]).
pub(crate) fn stream_carries_handles(_stream: &Stream) -> bool {
    true
}

/// Sends handles after a message. The receiver is not known here (a pipe end may have moved to
/// any process), so the *receiver* takes them: we leave each handle open in our own process
/// and send our pid and the values; the receiver duplicates them into itself and closes ours
/// (`DUPLICATE_CLOSE_SOURCE`). Until it does, they stay open here; if we exit first, they are
/// lost and the receiver says so.
pub(crate) fn send_handles_on(stream: &Stream, handles: Vec<OwnedHandle>) -> io::Result<()> {
    send_with_handles(stream, [&[], &[]], handles)
}

/// Sends a message's frame (`frame`: its header and payload) and then its handles (see
/// [`send_handles_on`]), in one write.
pub(crate) fn send_with_handles(
    stream: &Stream,
    frame: [&[u8]; 2],
    handles: Vec<OwnedHandle>,
) -> io::Result<()> {
    use std::os::windows::io::IntoRawHandle;
    // One frame of the connection's format (CPython's: a 4-byte big-endian length, then the
    // payload; see `wire::frame`), which the receiving `Connection` reads as such.
    let payload = handles_frame_len(handles.len());
    let mut bytes = Vec::with_capacity(frame[0].len() + frame[1].len() + 4 + payload as usize);
    bytes.extend_from_slice(frame[0]);
    bytes.extend_from_slice(frame[1]);
    bytes.extend_from_slice(&(payload as u32).to_be_bytes());
    bytes.extend_from_slice(&pid().to_le_bytes());
    for h in handles {
        bytes.extend_from_slice(&(h.into_raw_handle() as usize as u64).to_le_bytes());
    }
    (&*stream).write_all(&bytes)
}

/// The payload length of the frame [`send_handles_on`] sends for `count` handles.
pub(crate) fn handles_frame_len(count: usize) -> u64 {
    4 + 8 * count as u64
}

/// Reads what the stream has (blocking until something), up to `buf.len()` bytes; `Ok(0)` is end
/// of file. Handles travel inside frames here, so `arrived` stays empty.
pub(crate) fn recv_some(
    stream: &Stream,
    _socket: bool,
    buf: &mut [u8],
    _arrived: &mut std::collections::VecDeque<OwnedHandle>,
) -> io::Result<usize> {
    use std::io::Read;
    (&*stream).read(buf)
}

/// As [`recv_some`], but `WouldBlock` instead of waiting when nothing has arrived; `Ok(0)` at
/// end of file.
pub(crate) fn recv_now(
    stream: &Stream,
    _socket: bool,
    buf: &mut [u8],
    _arrived: &mut std::collections::VecDeque<OwnedHandle>,
) -> io::Result<usize> {
    stream.read_available(buf)
}

/// Writes the first bytes of `buf` without blocking: `Ok(n)` once `n` are in the pipe,
/// `WouldBlock` while a write of them is in flight (wait with [`wait_writable`], then call
/// again with the same bytes).
pub(crate) fn send_now(stream: &Stream, _socket: bool, buf: &[u8]) -> io::Result<usize> {
    stream.write_now(buf)
}

/// Waits until the stream's write in flight, if any, has completed (see [`send_now`]), or
/// until the timeout (`None`: forever); false if the timeout passed.
pub(crate) fn wait_writable(stream: &Stream, timeout: Option<Duration>) -> io::Result<bool> {
    if !stream.write_in_flight() {
        return Ok(true);
    }
    use windows_sys::Win32::System::Threading::INFINITE;
    let ms = timeout.map_or(INFINITE, |t| {
        // Round up so that we never wake before the deadline.
        t.as_micros().div_ceil(1000).min(u128::from(INFINITE - 1)) as u32
    });
    // SAFETY: waits on the channel's own event, alive while `stream` is borrowed; it stays
    // signalled once the write completed until the next write starts.
    match unsafe { WaitForSingleObject(stream.write_event(), ms) } {
        WAIT_FAILED => Err(io::Error::last_os_error()),
        WAIT_TIMEOUT => Ok(false),
        _ => Ok(true),
    }
}

/// Takes the `count` handles named in `frame` (sent by [`send_handles_on`], already read) out of
/// the sender's process.
pub(crate) fn claim_handles(
    frame: &[u8],
    count: usize,
    _arrived: &mut std::collections::VecDeque<OwnedHandle>,
) -> io::Result<Vec<OwnedHandle>> {
    use windows_sys::Win32::Foundation::{CloseHandle, DUPLICATE_CLOSE_SOURCE};
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_DUP_HANDLE};
    if frame.len() as u64 != handles_frame_len(count) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "handles were lost in transit",
        ));
    }
    let sender = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
    // SAFETY: OpenProcess with a plain access mask; closed below.
    let process = unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, sender) };
    if process.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the sending process ({sender}) exited before its handles were taken"),
        ));
    }
    let mut out = Vec::with_capacity(count);
    let mut failed = None;
    for c in frame[4..].chunks_exact(8) {
        let value = u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as usize as HANDLE;
        let mut ours: HANDLE = std::ptr::null_mut();
        // SAFETY: duplicates a handle the sender left open for us out of its process (closing
        // its copy there) into ours; `process` is a live process handle.
        let ok = unsafe {
            DuplicateHandle(
                process,
                value,
                GetCurrentProcess(),
                &mut ours,
                0,
                0,
                DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE,
            )
        };
        if ok == 0 {
            failed.get_or_insert_with(io::Error::last_os_error);
            continue;
        }
        // SAFETY: a fresh handle in our process, owned by nobody else.
        out.push(unsafe { OwnedHandle::from_raw_handle(ours) });
    }
    // SAFETY: closing the process handle opened above.
    unsafe { CloseHandle(process) };
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
