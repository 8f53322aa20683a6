//! POSIX shell quoting of argv vectors, for `--dry-run` output that can be pasted.
//!
//! Why not the `shlex` crate: its quoting is the same rule (single quotes, `'` as
//! `'\''`), and writing the rule here keeps byte strings (non-UTF-8 paths) exact and
//! avoids a dependency for twenty lines. The tests run every quoted line through
//! `sh -c` and compare the words that arrive, for hostile inputs.
//!
//! The rule: a word made only of characters that no POSIX shell treats specially
//! (letters, digits and `_ @ % + = : , . / -`) is written as is; anything else is
//! wrapped in single quotes, inside which a shell interprets nothing, and each
//! single quote becomes `'\''` (close, escaped quote, reopen). The empty word is
//! `''`. A word in command position that contains `=` would be taken for a variable
//! assignment, so there `=` is quoted too.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Bytes that never need quoting in any position but the command word.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&byte)
}

/// Quotes one word for a POSIX shell; `command_position` quotes `=` as well.
/// Lossy only for non-UTF-8 bytes (use [`quote_line_bytes`] for exact output).
pub fn quote_word(word: &OsStr, command_position: bool) -> String {
    let mut out = Vec::with_capacity(word.len() + 2);
    quote_word_bytes(word, command_position, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte-exact form of [`quote_word`].
fn quote_word_bytes(word: &OsStr, command_position: bool, out: &mut Vec<u8>) {
    let bytes = word.as_bytes();
    let plain = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| is_plain(b) && !(command_position && b == b'='));
    if plain {
        out.extend_from_slice(bytes);
        return;
    }
    out.push(b'\'');
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

/// One shell command line from environment assignments and an argv vector:
/// `env -u NAME ... NAME=VALUE ... ARGV...` when there are environment changes
/// (`env` works the same in every shell, unlike prefix assignments, and can unset),
/// else just the argv. Byte-exact: non-UTF-8 arguments survive.
pub fn quote_line_bytes(
    env_unset: &[OsString],
    env_set: &[(OsString, OsString)],
    argv: &[OsString],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut first = true;
    let mut word = |w: &OsStr, command: bool, out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b' ');
        }
        quote_word_bytes(w, command, out);
    };
    let with_env = !env_unset.is_empty() || !env_set.is_empty();
    if with_env {
        word(OsStr::new("env"), true, &mut out);
        for name in env_unset {
            word(OsStr::new("-u"), false, &mut out);
            word(name, false, &mut out);
        }
        for (name, value) in env_set {
            let mut assignment = name.clone();
            assignment.push("=");
            assignment.push(value);
            word(&assignment, false, &mut out);
        }
    }
    for (i, arg) in argv.iter().enumerate() {
        // After `env`, the program name is an argument of env, which treats a word
        // with `=` as an assignment too: quoting does not help there, so the caller
        // must not pass such a program (plan validation refuses it).
        word(arg, i == 0 && !with_env, &mut out);
    }
    out
}

/// [`quote_line_bytes`] as text (lossy only for non-UTF-8 arguments).
pub fn quote_line(
    env_unset: &[OsString],
    env_set: &[(OsString, OsString)],
    argv: &[OsString],
) -> String {
    String::from_utf8_lossy(&quote_line_bytes(env_unset, env_set, argv)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn plain_words_unquoted() {
        assert_eq!(quote_word(OsStr::new("srun"), true), "srun");
        assert_eq!(quote_word(OsStr::new("--mpi=pmi2"), false), "--mpi=pmi2");
        assert_eq!(quote_word(OsStr::new("/a/b:/c:ro"), false), "/a/b:/c:ro");
        assert_eq!(quote_word(OsStr::new(""), false), "''");
        assert_eq!(quote_word(OsStr::new("a b"), false), "'a b'");
        assert_eq!(quote_word(OsStr::new("it's"), false), "'it'\\''s'");
        assert_eq!(quote_word(OsStr::new("A=b"), true), "'A=b'");
        assert_eq!(quote_word(OsStr::new("~"), false), "'~'");
        assert_eq!(quote_word(OsStr::new("#x"), false), "'#x'");
    }

    /// Runs the quoted line through `sh -c` with a program that prints each
    /// argument NUL-terminated, and returns the words that arrived.
    fn through_sh(argv_tail: &[OsString]) -> Vec<Vec<u8>> {
        let mut argv = vec![os("printf"), os("%s\\0")];
        argv.extend_from_slice(argv_tail);
        let line = quote_line_bytes(&[], &[], &argv);
        let out = Command::new("sh")
            .arg("-c")
            .arg(std::ffi::OsStr::from_bytes(&line))
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "sh failed on {line:?}");
        let mut words: Vec<Vec<u8>> = out.stdout.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
        words.pop(); // after the last NUL
        words
    }

    #[test]
    fn round_trip_hostile_words() {
        let words: Vec<OsString> = [
            "plain",
            "with space",
            "tab\there",
            "new\nline",
            "single'quote",
            "double\"quote",
            "dollar $HOME ${x} $(id) `id`",
            "back\\slash",
            "glob * ? [a]",
            "semi; rm -rf /; echo",
            "&& || | > < >>",
            "~user",
            "#comment",
            "!bang",
            "{a,b}",
            "",
            "'",
            "''",
            "a=b",
            "--opt=val with space",
            "émoji ü",
        ]
        .iter()
        .map(|s| os(s))
        .collect();
        let got = through_sh(&words);
        let want: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn round_trip_non_utf8_and_every_byte() {
        use std::os::unix::ffi::OsStringExt;
        let every: Vec<u8> = (1u8..=255).collect();
        let words = vec![
            OsString::from_vec(vec![0xff, 0xfe, b' ', b'\'']),
            OsString::from_vec(every),
        ];
        let got = through_sh(&words);
        let want: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn env_prefix_round_trip() {
        let line = quote_line_bytes(
            &[os("HYBRUN_TEST_UNSET")],
            &[(os("HYBRUN_TEST_A"), os("x y'$z\nw"))],
            &[
                os("sh"),
                os("-c"),
                os("printf '%s|%s' \"$HYBRUN_TEST_A\" \"${HYBRUN_TEST_UNSET-gone}\""),
            ],
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(std::ffi::OsStr::from_bytes(&line))
            .env("HYBRUN_TEST_UNSET", "present")
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x y'$z\nw|gone");
    }
}
