//! Descriptors passed between processes (`SCM_RIGHTS`): to a child over its channel, with a
//! message over a stream, with a queue's values over its datagram side channel.

use super::*;

/// Handles on their way to one child, ready to send over its channel.
pub(crate) struct Transfer(Vec<OwnedFd>);

/// Whether [`transfer_handles`] needs the child's process: not on Unix, where descriptors
/// travel by themselves (they wait in the channel until the child reads them).
pub(crate) const HANDLES_NEED_CHILD: bool = false;

/// Prepares `handles` for `child` (on Unix they travel as they are, with `SCM_RIGHTS`, before
/// the child exists if need be).
pub(crate) fn transfer_handles(
    _child: Option<&ProcHandle>,
    handles: Vec<OwnedHandle>,
) -> io::Result<Transfer> {
    Ok(Transfer(handles))
}

/// Most descriptors in one `SCM_RIGHTS` message (the kernel's limit is 253).
pub(super) const FDS_PER_MESSAGE: usize = 250;

/// Sends the handles over `channel`, one byte each message carrying up to 250 descriptors.
/// Ours are closed afterwards (the receiver has its own).
pub(crate) fn send_transfer(channel: &Channel, transfer: Transfer) -> io::Result<()> {
    send_fds(channel.as_fd(), transfer.0)
}

/// Most handles one value in a queue may carry (they travel as one datagram).
pub(crate) const HANDLES_PER_DATAGRAM: usize = FDS_PER_MESSAGE;

/// A connected pair of non-blocking datagram sockets: the side channel on which handles travel
/// beside a queue's messages (in order, under the queue's locks). Handles in flight live in the
/// socket, not in the sender, so the sender may exit at once.
pub(crate) fn handle_channel() -> io::Result<(OwnedHandle, OwnedHandle)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two new descriptors into `fds`.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&ends.0, &ends.1] {
        set_cloexec(fd)?;
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(ends)
}

/// Sends `handles` as one datagram on a [`handle_channel`] end (at most
/// [`HANDLES_PER_DATAGRAM`]); `WouldBlock` when the channel is full.
pub(crate) fn send_handles_datagram(
    socket: &OwnedHandle,
    handles: Vec<OwnedHandle>,
) -> io::Result<()> {
    send_fds(socket.as_fd(), handles)
}

/// Receives the next datagram's `count` handles from a [`handle_channel`] end; `WouldBlock` if
/// none is there.
pub(crate) fn recv_handles_datagram(
    socket: &OwnedHandle,
    count: usize,
) -> io::Result<Vec<OwnedHandle>> {
    recv_fds(socket.as_fd(), count)
}

/// Reads what `channel` has (blocking until something), up to `buf.len()` bytes, with the
/// descriptors that come with them (appended to `arrived`, close-on-exec); `Ok(0)` is end of
/// file. A child's first read takes its whole bootstrap this way, handles included.
pub(crate) fn recv_channel(
    channel: &Channel,
    buf: &mut [u8],
    arrived: &mut VecDeque<OwnedHandle>,
) -> io::Result<usize> {
    loop {
        match recv_with_fds(channel.as_fd(), buf, arrived, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Receives the `count` handles sent with [`send_transfer`], of which `read` (its bytes, one a
/// batch) and `arrived` (their descriptors) came with earlier reads ([`recv_channel`]); they
/// arrive close-on-exec.
pub(crate) fn recv_handles(
    channel: &Channel,
    count: usize,
    read: &[u8],
    arrived: &mut VecDeque<OwnedHandle>,
) -> io::Result<Vec<OwnedHandle>> {
    if read.len() > count.div_ceil(FDS_PER_MESSAGE) || arrived.len() > count {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more handles than announced",
        ));
    }
    let mut handles: Vec<OwnedHandle> = arrived.drain(..).collect();
    handles.extend(recv_fds(channel.as_fd(), count - handles.len())?);
    Ok(handles)
}

/// True if handles can travel over `stream` (it is a Unix socket).
pub(crate) fn stream_carries_handles(stream: &Stream) -> bool {
    // SAFETY: fstat into a zeroed stat buffer on a descriptor we hold.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(stream.as_raw_fd(), &mut st) == 0
            && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

/// Sends handles over a `Connection`'s socket, after the frame that mentions them, as a frame
/// of their own: its payload is one byte per `SCM_RIGHTS` batch of descriptors, and each byte
/// carries its batch. The receiver reads the frame like any other (see [`recv_some`]) and then
/// takes the descriptors with [`claim_handles`].
pub(crate) fn send_handles_on(stream: &Stream, handles: Vec<OwnedHandle>) -> io::Result<()> {
    let batches = handles.len().div_ceil(FDS_PER_MESSAGE);
    for (i, chunk) in handles.chunks(FDS_PER_MESSAGE).enumerate() {
        let mut first = [0u8; 5];
        first[..4].copy_from_slice(&(batches as i32).to_be_bytes());
        let data: &mut [u8] = if i == 0 { &mut first } else { &mut first[4..] };
        send_fds_with(stream.as_fd(), data, chunk)?;
    }
    Ok(())
}

/// Sends a message's frame (`frame`: its header and payload) and then the handles it mentions,
/// as [`send_handles_on`] does, the first batch of descriptors riding with the message's bytes:
/// one `sendmsg` where the two took a write each, so one wake-up of the receiver (issue 19).
pub(crate) fn send_with_handles(
    stream: &Stream,
    frame: [&[u8]; 2],
    handles: Vec<OwnedHandle>,
) -> io::Result<()> {
    let batches = handles.len().div_ceil(FDS_PER_MESSAGE);
    let mut announce = [0u8; 5];
    announce[..4].copy_from_slice(&(batches as i32).to_be_bytes());
    let parts = [frame[0], frame[1], &announce[..]];
    let mut chunks = handles.chunks(FDS_PER_MESSAGE);
    let first = chunks.next().unwrap_or_default();
    let fds: Vec<i32> = first.iter().map(AsRawFd::as_raw_fd).collect();
    let mut iov = parts.map(|p| libc::iovec {
        iov_base: p.as_ptr().cast_mut().cast(),
        iov_len: p.len(),
    });
    let sent = with_fd_message_iov(&mut iov, fds.len(), |msg| {
        fill_rights(msg, &fds);
        loop {
            // SAFETY: `msg` is fully initialised; sendmsg only reads the buffers it points at.
            let r = unsafe { libc::sendmsg(stream.as_raw_fd(), msg, libc::MSG_NOSIGNAL) };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    })?;
    // The descriptors went with the first bytes; what a short send left goes plainly.
    super::write_rest(stream.as_fd(), &parts, sent)?;
    for chunk in chunks {
        send_fds_with(stream.as_fd(), &mut [0u8], chunk)?;
    }
    Ok(())
}

/// Fills `msg`'s control buffer (sized for them by [`with_fd_message_iov`]) with one
/// `SCM_RIGHTS` header carrying `fds`.
fn fill_rights(msg: &mut libc::msghdr, fds: &[i32]) {
    if fds.is_empty() {
        return;
    }
    // SAFETY: the control buffer has room, aligned for cmsghdr, for exactly one header with
    // `fds.len()` descriptors.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
    }
}

/// The payload length of the frame [`send_handles_on`] sends for `count` handles.
pub(crate) fn handles_frame_len(count: usize) -> u64 {
    count.div_ceil(FDS_PER_MESSAGE) as u64
}

/// The `count` handles that the frame `frame` (sent by [`send_handles_on`], already read)
/// brought: the oldest `count` descriptors that arrived on the stream.
pub(crate) fn claim_handles(
    frame: &[u8],
    count: usize,
    arrived: &mut VecDeque<OwnedHandle>,
) -> io::Result<Vec<OwnedHandle>> {
    if frame.len() as u64 != handles_frame_len(count) || arrived.len() < count {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "handles were lost in transit",
        ));
    }
    Ok(arrived.drain(..count).collect())
}

/// Reads what the stream has (blocking until something), up to `buf.len()` bytes; `Ok(0)` is end
/// of file. On a socket, descriptors that arrive with the bytes are appended to `arrived` (they
/// are close-on-exec); a pipe is read plainly.
pub(crate) fn recv_some(
    stream: &Stream,
    socket: bool,
    buf: &mut [u8],
    arrived: &mut VecDeque<OwnedHandle>,
) -> io::Result<usize> {
    use std::io::Read;
    loop {
        let got = if socket {
            recv_with_fds(stream.as_fd(), buf, arrived, 0)
        } else {
            (&*stream).read(buf)
        };
        match got {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// As [`recv_some`](super::recv_some), but `WouldBlock` instead of waiting when nothing has
/// arrived.
pub(crate) fn recv_now(
    stream: &Stream,
    socket: bool,
    buf: &mut [u8],
    arrived: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    loop {
        let got = if socket {
            recv_with_fds(stream.as_fd(), buf, arrived, libc::MSG_DONTWAIT)
        } else if ready_now(stream.as_fd(), libc::POLLIN)? {
            std::io::Read::read(&mut &*stream, buf)
        } else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        match got {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Writes what the stream takes now of `buf` (at least one byte), or `WouldBlock`: on a
/// socket with `MSG_DONTWAIT`; on a pipe, which has no such flag, after a zero-timeout
/// `poll(2)` says `POLLOUT`, at most `PIPE_BUF` bytes (which then fit: a pipe end has one
/// writer at a time, since two would interleave their frames). Reads that must not block are
/// [`recv_now`]'s, the same way.
pub(crate) fn send_now(stream: &Stream, socket: bool, buf: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    const NO_SIGNAL: i32 = libc::MSG_NOSIGNAL;
    #[cfg(not(target_os = "linux"))]
    const NO_SIGNAL: i32 = 0;
    loop {
        let sent = if socket {
            // SAFETY: a send from a live buffer of the given length on a socket we hold.
            let r = unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | NO_SIGNAL,
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r as usize)
            }
        } else if fds::ready_now(stream.as_fd(), libc::POLLOUT)? {
            (&*stream).write(&buf[..buf.len().min(libc::PIPE_BUF)])
        } else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        match sent {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Whether `fd` has any of `events` now (a zero-timeout `poll(2)`).
pub(super) fn ready_now(fd: BorrowedFd<'_>, events: libc::c_short) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r >= 0 {
            return Ok(r > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One `recvmsg` into `buf`, with room for a batch of descriptors; `flags` are added to the
/// call's (`MSG_DONTWAIT` for a read that must not block).
pub(super) fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    arrived: &mut VecDeque<OwnedFd>,
    flags: i32,
) -> io::Result<usize> {
    with_fd_message(buf, FDS_PER_MESSAGE, |msg| {
        // SAFETY: `msg` points at live buffers of the sizes given.
        let r = unsafe { libc::recvmsg(socket.as_raw_fd(), msg, cloexec_flag() | flags) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let before = arrived.len();
        // SAFETY: reads the control messages the kernel wrote into our buffer.
        unsafe { take_fds(msg, |fd| arrived.push_back(fd)) };
        if cloexec_flag() == 0 {
            for fd in arrived.range(before..) {
                set_cloexec(fd)?;
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handles were lost in transit (more arrived at once than expected)",
            ));
        }
        Ok(r as usize)
    })
}

/// Takes ownership of the descriptors in `msg`'s `SCM_RIGHTS` control messages.
///
/// # Safety
/// `msg` must be a message just filled by `recvmsg` (its control buffer and length as the
/// kernel left them); each descriptor is then ours, and taken once.
unsafe fn take_fds(msg: &mut libc::msghdr, mut take: impl FnMut(OwnedFd)) {
    // SAFETY: per the contract, the control buffer holds well-formed control messages; the
    // descriptors in them were installed in our table for us.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<i32>();
                let n = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<i32>();
                for i in 0..n {
                    take(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
}

/// Runs `f` with a message over `data` and room for `fd_count` descriptors: the buffers live
/// on this frame, so the pointers inside the `msghdr` stay valid for the call.
pub(super) fn with_fd_message<R>(
    data: &mut [u8],
    fd_count: usize,
    f: impl FnOnce(&mut libc::msghdr) -> R,
) -> R {
    let mut iov = [libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    }];
    with_fd_message_iov(&mut iov, fd_count, f)
}

/// [`with_fd_message`] over several buffers.
fn with_fd_message_iov<R>(
    iov: &mut [libc::iovec],
    fd_count: usize,
    f: impl FnOnce(&mut libc::msghdr) -> R,
) -> R {
    let payload = fd_count * std::mem::size_of::<i32>();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = [0u64; 128];
    let mut heap;
    let control: &mut [u64] = if space <= 8 * control.len() {
        &mut control[..space.div_ceil(8)]
    } else {
        heap = vec![0u64; space.div_ceil(8)];
        &mut heap
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives `f`.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    if fd_count > 0 {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
    }
    f(&mut msg)
}

pub(super) fn send_fds(socket: BorrowedFd<'_>, fds: Vec<OwnedFd>) -> io::Result<()> {
    for chunk in fds.chunks(FDS_PER_MESSAGE) {
        send_fds_with(socket, &mut [0], chunk)?;
    }
    Ok(())
}

/// Sends `data` (a few bytes, written whole) carrying `fds` (at most [`FDS_PER_MESSAGE`]).
pub(super) fn send_fds_with(
    socket: BorrowedFd<'_>,
    data: &mut [u8],
    fds: &[OwnedFd],
) -> io::Result<()> {
    let len = data.len();
    let fds: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    with_fd_message(data, fds.len(), |msg| {
        fill_rights(msg, &fds);
        loop {
            // SAFETY: `msg` is fully initialised.
            let r = unsafe { libc::sendmsg(socket.as_raw_fd(), msg, libc::MSG_NOSIGNAL) };
            if r >= 0 {
                return if r as usize == len {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "handles were sent with part of their bytes",
                    ))
                };
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    })
}

pub(super) fn recv_fds(socket: BorrowedFd<'_>, count: usize) -> io::Result<Vec<OwnedFd>> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let want = (count - out.len()).min(FDS_PER_MESSAGE);
        let before = out.len();
        let mut byte = [0u8; 1];
        // `None`: interrupted before anything arrived, try again.
        let received = with_fd_message(&mut byte, want, |msg| -> io::Result<Option<bool>> {
            let flags = cloexec_flag();
            // SAFETY: `msg` points at live buffers of the sizes given.
            let r = unsafe { libc::recvmsg(socket.as_raw_fd(), msg, flags) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(None);
                }
                return Err(e);
            }
            if r == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "handles never arrived",
                ));
            }
            // SAFETY: `msg` was just filled by recvmsg.
            unsafe { take_fds(msg, |fd| out.push(fd)) };
            Ok(Some(msg.msg_flags & libc::MSG_CTRUNC != 0))
        })?;
        let Some(truncated) = received else { continue };
        if cloexec_flag() == 0 {
            for fd in &out[before..] {
                set_cloexec(fd)?;
            }
        }
        if truncated || out.len() == before {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handles were lost in transit",
            ));
        }
    }
    Ok(out)
}

/// `MSG_CMSG_CLOEXEC` where the OS has it (received descriptors are close-on-exec atomically).
pub(super) fn cloexec_flag() -> i32 {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    return libc::MSG_CMSG_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    return 0;
}

/// Sets close-on-exec (where `MSG_CMSG_CLOEXEC` cannot).
pub(super) fn set_cloexec(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
