//! The store's policy: which directory, how many images, which mode, which
//! scanner, and which image names are acceptable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::StoreError;
use crate::site::Site;

/// The environment variable that names the allowed directory when the site file
/// does not (the variable sites already export for Singularity's allowed directory).
pub const ALLOWED_DIR_ENV: &str = "SINGULARITY_ALLOWED_DIR";

/// Longest image name, in bytes: well under NAME_MAX (255) so that the temporary
/// names and any suffix a runtime adds still fit.
pub const MAX_NAME_LEN: usize = 128;

/// What the store enforces, resolved from the site file, the environment and the
/// command line.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The allowed directory (absolute; checked to be canonical when opened).
    pub dir: PathBuf,
    /// Where `dir` came from, for messages ("--dir", "site.toml", ...).
    pub dir_from: String,
    /// Most images the directory may hold.
    pub max_images: u32,
    /// Permission bits of admitted images.
    pub mode: u32,
    /// The scanner's argv (empty: no scanner).
    pub scanner: Vec<String>,
    /// How long the scanner may run.
    pub scanner_timeout: Duration,
}

impl Policy {
    /// The policy of `site`; the directory is `dir_override` (`--dir`), else the
    /// site's `[images] dir`, else `$SINGULARITY_ALLOWED_DIR`.
    pub fn from_site(site: &Site, dir_override: Option<&Path>) -> Result<Policy, StoreError> {
        let images = &site.config.images;
        let (dir, dir_from) = if let Some(dir) = dir_override {
            if let (Some(system), Some(_)) = (&site.images_from, &images.dir) {
                return Err(StoreError::DirOverride {
                    dir: dir.display().to_string(),
                    system: system.display().to_string(),
                });
            }
            (dir.to_owned(), "--dir".to_owned())
        } else if let Some(template) = &images.dir {
            let dir = expand_dir(template).map_err(|why| StoreError::NoDirectory {
                site: site.images_label(),
                why,
            })?;
            (dir, site.images_label())
        } else if let Some(dir) = std::env::var_os(ALLOWED_DIR_ENV).filter(|d| !d.is_empty()) {
            (PathBuf::from(dir), format!("${ALLOWED_DIR_ENV}"))
        } else {
            return Err(StoreError::NoDirectory {
                site: site.images_label(),
                why: "it is not set".into(),
            });
        };
        if !dir.is_absolute() {
            return Err(StoreError::DirNotAbsolute {
                dir: dir.display().to_string(),
                from: dir_from,
            });
        }
        Ok(Policy {
            dir,
            dir_from,
            max_images: images.max_images,
            // Checked when the site file was read; the default is valid.
            mode: images.mode_bits().unwrap_or(0o640),
            scanner: images.scanner.clone(),
            scanner_timeout: images.scanner_timeout(),
        })
    }
}

/// Checks that `name` is a plain image name: a single file name component that
/// starts with a letter or digit, made of letters, digits and `. _ - +` only,
/// in Unicode normal form C, ending in `.sif`. Returns why not.
///
/// Why so strict: a name is shown in listings, pasted into commands and
/// compared by people. Control and format characters (terminal escapes, bidi
/// overrides, zero-width joiners), separators (line separators, no-break
/// spaces), a leading `-` (read as an option by `rm`) and two spellings of one
/// name (a precomposed é and e + combining accent) would each let a name look
/// like another or like something else entirely.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "it is {} bytes long, more than {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.contains('/') {
        return Err("it contains '/' (a path, not a name)".into());
    }
    if name.contains("..") {
        return Err("it contains '..'".into());
    }
    // Hidden names are hybrun's own (index, lock, temporary files), and the
    // runtime's listing would not show them either.
    if name.starts_with('.') {
        return Err("it starts with '.' (hidden names are reserved)".into());
    }
    if name.starts_with('-') {
        return Err("it starts with '-' (commands would read it as an option)".into());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        return Err(format!(
            "it contains {} (only letters, digits, '.', '_', '-' and '+' are allowed)",
            describe_char(c)
        ));
    }
    if !name.starts_with(char::is_alphanumeric) {
        return Err("it must start with a letter or a digit".into());
    }
    if !unicode_normalization::is_nfc(name) {
        return Err(
            "it is not in Unicode normal form C (an accented letter spelled as letter + \
             combining mark): type it again, precomposed"
                .into(),
        );
    }
    if !name.ends_with(".sif") {
        return Err("it does not end in .sif".into());
    }
    Ok(())
}

/// A character for a message: printable ones quoted, others by code point.
fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() || !(c.is_alphanumeric() || c.is_ascii_graphic()) {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("'{c}'")
    }
}

/// A directory entry's name as people may see it: unchanged when it is a valid
/// image name (or plain printable ASCII), else quoted with every byte outside
/// printable ASCII escaped (`\x1b`, `\u{202e}`), so that a planted name can
/// neither drive the terminal nor forge another line of a report. `hybrun image
/// rm` accepts this spelling (without the quotes) as well as the name itself.
pub fn display_name(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(name) if check_name(name).is_ok() => name.to_owned(),
        Ok(name) if name.bytes().all(|b| b.is_ascii_graphic()) => name.to_owned(),
        _ => format!("\"{}\"", escape_name(raw)),
    }
}

/// Every byte or character outside printable ASCII (and the backslash and
/// double quote) escaped.
pub fn escape_name(raw: &[u8]) -> String {
    let mut out = String::new();
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                ' '..='~' => out.push(c),
                _ => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The directory template of the site file with `{user}` and `{uid}` replaced.
fn expand_dir(template: &str) -> Result<PathBuf, String> {
    let uid = rustix::process::getuid().as_raw();
    let mut dir = template.replace("{uid}", &uid.to_string());
    if dir.contains("{user}") {
        let user = user_name(uid)
            .ok_or_else(|| format!("{template:?} uses {{user}} but user ID {uid} has no name"))?;
        dir = dir.replace("{user}", &user);
    }
    if dir.contains('{') || dir.contains('}') {
        return Err(format!(
            "{template:?} has a placeholder other than {{user}} and {{uid}}"
        ));
    }
    Ok(PathBuf::from(dir))
}

/// The login name of `uid` from the system's user database (files, LDAP, SSSD:
/// whatever NSS is configured with, as on a cluster), not from `$USER`, which a
/// batch job may not set.
fn user_name(uid: u32) -> Option<String> {
    let mut buffer = vec![0u8; 4096];
    loop {
        // SAFETY: all-zero is a valid `passwd` (null pointers, zero IDs).
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: the pointers are valid for the call; `buffer` outlives the use of
        // `entry`'s string pointers, which point into it.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 4, 0);
            continue;
        }
        if rc != 0 || found.is_null() || entry.pw_name.is_null() {
            return None;
        }
        // SAFETY: getpwuid_r succeeded: pw_name is a NUL-terminated string in `buffer`.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
        return name.to_str().ok().map(str::to_owned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names() {
        for name in [
            "a.sif",
            "my-app_1.2.sif",
            "x.y.sif",
            "émoji-ü.sif",
            "gcc+mpi.sif",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
        assert_eq!(check_name(&format!("{}.sif", "a".repeat(124))), Ok(()));
    }

    #[test]
    fn bad_names() {
        for name in [
            "",
            ".sif",
            ".hidden.sif",
            "../x.sif",
            "a/b.sif",
            "/abs.sif",
            "..",
            "a..sif",
            "tab\t.sif",
            "nl\n.sif",
            "image.img",
            "image.sif.tmp",
            &format!("{}.sif", "a".repeat(125)),
            "-rf.sif",
            "a b.sif",
            "bidi\u{202e}fis.sif",
            "zero\u{200b}width.sif",
            "line\u{2028}sep.sif",
            "\u{a0}\u{a0}.sif",
            "e\u{301}.sif",
            "esc\u{1b}[31m.sif",
            "_x.sif",
        ] {
            assert!(check_name(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn names_shown_escaped() {
        assert_eq!(display_name(b"ok.sif"), "ok.sif");
        assert_eq!(display_name(b"small.sif\n"), "\"small.sif\\u{a}\"");
        assert_eq!(display_name(b"a\x1b[31m.sif"), "\"a\\u{1b}[31m.sif\"");
        assert_eq!(display_name(b"bad\xff.sif"), "\"bad\\xff.sif\"");
        assert_eq!(
            display_name("r\u{202e}.sif".as_bytes()),
            "\"r\\u{202e}.sif\""
        );
        assert_eq!(display_name(b"-rf.sif"), "-rf.sif");
    }

    #[test]
    fn dir_placeholders() {
        let uid = rustix::process::getuid().as_raw();
        assert_eq!(
            expand_dir("/a/{uid}/b").ok(),
            Some(PathBuf::from(format!("/a/{uid}/b")))
        );
        assert!(expand_dir("/a/{home}").is_err());
        if let Some(user) = user_name(uid) {
            assert_eq!(
                expand_dir("/a/{user}").ok(),
                Some(PathBuf::from(format!("/a/{user}")))
            );
        }
    }
}
