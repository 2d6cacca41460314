//! Socket options on connections a library opened and does not expose (the database's, the
//! Runtime API's).

/// Calls `apply` on every socket of this process connected to a peer `to` accepts: for socket
/// options on connections a library opened and does not expose.
#[cfg(target_os = "linux")]
pub(crate) fn for_each_connection_to(
    to: impl Fn(std::net::SocketAddr) -> bool,
    apply: impl Fn(&socket2::SockRef<'_>),
) {
    use std::os::fd::BorrowedFd;
    let Ok(descriptors) = std::fs::read_dir("/proc/self/fd") else { return };
    for fd in descriptors.flatten().filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok()) {
        // SAFETY: the descriptor is only borrowed for a few system calls. One closed meanwhile
        // makes them fail (EBADF); one reused meanwhile would have to be a TCP socket to a
        // peer `to` accepts for anything to change.
        let descriptor = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&descriptor);
        if socket.peer_addr().ok().and_then(|a| a.as_socket()).is_some_and(&to) {
            apply(&socket);
        }
    }
}

/// Elsewhere there is no `/proc/self/fd` to look through; Lambda runs Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn for_each_connection_to(
    _to: impl Fn(std::net::SocketAddr) -> bool,
    _apply: impl Fn(&socket2::SockRef<'_>),
) {
}
