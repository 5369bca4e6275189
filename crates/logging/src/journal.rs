//! Whether our stderr is systemd's journal stream: `JOURNAL_STREAM` holds the `device:inode`
//! of the stream systemd connected, and it only counts while stderr still is that stream
//! (a child that redirected stderr elsewhere inherits the variable but not the stream).

/// True when `JOURNAL_STREAM` names the file that fd 2 is.
pub(crate) fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = parse(&value) else {
        return false;
    };
    stderr_identity() == Some((device, inode))
}

/// `"8:12345"` → `(8, 12345)`.
fn parse(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.trim().split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

fn stderr_identity() -> Option<(u64, u64)> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole `stat` into the buffer when it returns 0, and fd 2 is
    // only read.
    let ok = unsafe { libc::fstat(2, stat.as_mut_ptr()) } == 0;
    if !ok {
        return None;
    }
    // SAFETY: initialised by the successful fstat above.
    let stat = unsafe { stat.assume_init() };
    Some((stat.st_dev, stat.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_is_device_colon_inode() {
        assert_eq!(parse("8:12345"), Some((8, 12345)));
        assert_eq!(parse(" 0:1\n"), Some((0, 1)));
        assert_eq!(parse("8"), None);
        assert_eq!(parse("a:1"), None);
    }

    #[test]
    fn stderr_has_an_identity() {
        // Whatever stderr is under the test runner (a pipe or a file), fstat answers.
        assert!(stderr_identity().is_some());
    }
}
