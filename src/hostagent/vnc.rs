//! `video.display: vnc` (reference §2.7): QEMU starts its VNC server with
//! `password=on` and no password, so nobody can connect until the host
//! agent sets one. It generates a random one, sets it over QMP, and writes
//! `vncpassword` and `vncdisplay` (both 0600) for the user; both are
//! removed when QEMU stops.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::driver::qemu::qmp::Qmp;
use crate::store::paths::files;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `n` letters and digits from the kernel's CSPRNG (rejection sampling:
/// every character equally likely). VNC authentication uses 8 at most.
pub fn password(n: usize) -> std::io::Result<String> {
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let mut out = String::with_capacity(n);
    let limit = 256 - 256 % ALPHABET.len();
    while out.len() < n {
        let mut b = [0u8; 32];
        urandom.read_exact(&mut b)?;
        for &x in &b {
            if (x as usize) < limit && out.len() < n {
                out.push(ALPHABET[x as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// `host:display` of `video.vnc.display` (`127.0.0.1:0,to=9`), and whether
/// QEMU may pick another display (`to=`), so the real one must be asked.
pub fn parse_display(option: &str) -> anyhow::Result<(String, u16, bool)> {
    let (display, options) = option.split_once(',').unwrap_or((option, ""));
    let (host, num) = display
        .rsplit_once(':')
        .with_context(|| format!("video.vnc.display {option:?} is not HOST:DISPLAY[,…]"))?;
    let num: u16 = num
        .parse()
        .with_context(|| format!("video.vnc.display {option:?}: bad display number"))?;
    let ranged = options.split(',').any(|o| o.starts_with("to="));
    Ok((host.to_string(), num, ranged))
}

/// Sets the password and writes both files; returns the log lines' facts
/// (display, URL).
pub fn setup(dir: &Path, option: &str) -> anyhow::Result<(String, String)> {
    let (host, mut num, ranged) = parse_display(option)?;
    let mut qmp = Qmp::connect(&dir.join(files::QMP_SOCK), Duration::from_secs(30))?;
    let pw = password(8)?;
    qmp.change_vnc_password(&pw)?;
    crate::store::atomic::write(&dir.join(files::VNC_PASSWORD), pw.as_bytes(), 0o600)?;
    let mut port = 5900 + u32::from(num);
    if ranged && let Some(p) = qmp.vnc_port()? {
        port = u32::from(p);
        num = u16::try_from(port.saturating_sub(5900)).unwrap_or(0);
    }
    let display = format!("{host}:{num}");
    crate::store::atomic::write(&dir.join(files::VNC_DISPLAY), display.as_bytes(), 0o600)?;
    Ok((display, format!("vnc://{host}:{port}")))
}

/// [`setup`], logged as Lima logs it; a failure is a warning (the guest
/// runs on, only its display is unreachable).
pub fn start(dir: &Path, option: &str) {
    match setup(dir, option) {
        Ok((shown, url)) => {
            crate::info!("VNC server running at {shown} <{url}>");
            crate::info!("VNC Display: `{}`", dir.join(files::VNC_DISPLAY).display());
            crate::info!(
                "VNC Password: `{}`",
                dir.join(files::VNC_PASSWORD).display()
            );
        }
        Err(e) => crate::warn!("cannot set up the VNC display: {e:#}"),
    }
}

/// Removes both files (QEMU stopped: they describe nothing any more).
pub fn remove(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(files::VNC_DISPLAY));
    let _ = std::fs::remove_file(dir.join(files::VNC_PASSWORD));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_letters_and_digits() {
        let a = password(8).unwrap();
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(password(32).unwrap(), password(32).unwrap());
    }

    #[test]
    fn displays_parse_with_and_without_ranges() {
        assert_eq!(
            parse_display("127.0.0.1:0,to=9").unwrap(),
            ("127.0.0.1".into(), 0, true)
        );
        assert_eq!(
            parse_display("0.0.0.0:3").unwrap(),
            ("0.0.0.0".into(), 3, false)
        );
        assert!(parse_display("nonsense").is_err());
    }
}
