//! Process hardening that keeps the decrypted signing key out of reach: the process
//! is made non-dumpable at start, so that no core dump is written (the systemd unit
//! also sets `LimitCORE=0`) and other processes of the same user cannot read its
//! memory through ptrace or `/proc/<pid>/mem`.

/// Marks the process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`).
pub fn make_undumpable() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the process may dump core (`prctl(PR_GET_DUMPABLE)`).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE reads a flag of the calling process.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_becomes_non_dumpable() {
        make_undumpable().unwrap();
        assert!(!is_dumpable());
    }
}
