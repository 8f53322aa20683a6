//! The `LD_LIBRARY_PATH` an image sets for itself, read without running it.
//!
//! Singularity and Apptainer source `/.singularity.d/env/*.sh` in name order
//! when a container starts, then inject the caller's `SINGULARITYENV_*` /
//! `APPTAINERENV_*` variables after `99-base.sh` (the action script of 3.6 and
//! later), so a value hybrun passes *replaces* the image's own. Bind mode must
//! put the host MPI directory in front of the image's entries, not drop them:
//! CUDA images (NGC and the like) reach their compat and framework libraries
//! through `LD_LIBRARY_PATH`.
//!
//! Read here: the scripts the image's author controls, in the order the runtime
//! sources them: `10-docker2singularity.sh` / `10-docker.sh` (the OCI `ENV`, as
//! `export NAME="VALUE"` or `export NAME="${NAME:-"VALUE"}"`), `90-environment.sh`
//! (`%environment`) and `91-environment.sh` (`$SINGULARITY_ENVIRONMENT` at build).
//! The runtime's own scripts (`01-base.sh`, `94-appsbase.sh`, `95-apps.sh`,
//! `99-base.sh`, `99-runtimevars.sh`) are skipped: they only append the runtime's
//! `/.singularity.d/libs`, which the runtime appends anyway.
//!
//! Only assignments whose value is known without running the shell are
//! understood: literal text in any quoting, `$LD_LIBRARY_PATH` / `${LD_LIBRARY_PATH}`
//! (the value so far), and `${LD_LIBRARY_PATH:-WORD}`. Any other line that names
//! `LD_LIBRARY_PATH` (a condition, another variable, a command substitution) makes
//! the value unknown, and the caller says so rather than guess.

use super::contents::Image;

/// The author's scripts, in the order the runtime sources them.
pub const SCRIPTS: &[&str] = &[
    "/.singularity.d/env/10-docker.sh",
    "/.singularity.d/env/10-docker2singularity.sh",
    "/.singularity.d/env/90-environment.sh",
    "/.singularity.d/env/91-environment.sh",
];

/// Scripts larger than this are not read (an env script is a few KiB).
const SCRIPT_LIMIT: u64 = 1 << 20;

/// The image's own `LD_LIBRARY_PATH`, and where it was set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Declared {
    pub value: String,
    /// `file:line` of every assignment that made it.
    pub from: Vec<String>,
}

/// Reads the image's scripts. Ok(None): the image sets no `LD_LIBRARY_PATH`
/// (or sets it empty). Err: a script could not be read, or sets the variable in
/// a way only running it would tell; the message names the file and line.
pub fn declared_library_path(image: &Image) -> Result<Option<Declared>, String> {
    let mut scripts = Vec::new();
    for path in SCRIPTS {
        if image.entry(path).is_none() {
            continue;
        }
        let bytes = image
            .read_file(path, SCRIPT_LIMIT)
            .map_err(|e| e.to_string())?;
        scripts.push((
            path.to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    evaluate(&scripts)
}

/// Runs the assignments of `scripts` ((name, text), in source order) in the
/// small subset of sh described in the module documentation.
pub fn evaluate(scripts: &[(String, String)]) -> Result<Option<Declared>, String> {
    // The runtime starts the scripts with LD_LIBRARY_PATH unset (it never passes
    // the host's).
    let mut value = String::new();
    let mut from = Vec::new();
    for (name, text) in scripts {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.starts_with('#') || !line.contains("LD_LIBRARY_PATH") {
                continue;
            }
            let at = format!("{name}:{}", i + 1);
            let unknown = || {
                format!(
                    "{at} sets LD_LIBRARY_PATH in a way hybrun does not evaluate without running \
                     the image ({line:?})"
                )
            };
            let statement = line.strip_prefix("export ").map_or(line, str::trim_start);
            if statement == "LD_LIBRARY_PATH" {
                continue; // `export LD_LIBRARY_PATH`: no new value
            }
            let Some(word) = statement.strip_prefix("LD_LIBRARY_PATH=") else {
                return Err(unknown());
            };
            let mut chars = word.chars().peekable();
            let new = eval_word(&mut chars, &value, false).ok_or_else(unknown)?;
            let rest: String = chars.collect();
            let rest = rest.trim();
            if !(rest.is_empty() || rest == ";" || rest.starts_with('#')) {
                return Err(unknown());
            }
            value = new;
            from.push(at);
        }
    }
    Ok((!value.is_empty()).then_some(Declared { value, from }))
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// One shell word up to unquoted whitespace (or, inside `${...:-WORD}`, up to
/// the closing brace, which is consumed). None: something only a shell knows.
fn eval_word(chars: &mut Chars<'_>, current: &str, in_brace: bool) -> Option<String> {
    let mut out = String::new();
    while let Some(&c) = chars.peek() {
        match c {
            '}' if in_brace => {
                chars.next();
                return Some(out);
            }
            c if c.is_whitespace() || c == ';' => {
                if in_brace {
                    return None;
                }
                break;
            }
            '\'' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => out.push(c),
                    }
                }
            }
            '"' => {
                chars.next();
                loop {
                    match chars.peek()? {
                        '"' => {
                            chars.next();
                            break;
                        }
                        '\\' => {
                            chars.next();
                            match chars.next()? {
                                c @ ('"' | '\\' | '$' | '`') => out.push(c),
                                c => {
                                    out.push('\\');
                                    out.push(c);
                                }
                            }
                        }
                        '$' => out.push_str(&eval_expansion(chars, current)?),
                        '`' => return None,
                        _ => out.push(chars.next()?),
                    }
                }
            }
            '\\' => {
                chars.next();
                out.push(chars.next()?);
            }
            '$' => out.push_str(&eval_expansion(chars, current)?),
            '`' | '(' | ')' | '&' | '|' | '<' | '>' => return None,
            _ => {
                out.push(c);
                chars.next();
            }
        }
    }
    (!in_brace).then_some(out)
}

/// `$LD_LIBRARY_PATH`, `${LD_LIBRARY_PATH}` or `${LD_LIBRARY_PATH:-WORD}` (the
/// `$` not yet consumed); any other expansion is None.
fn eval_expansion(chars: &mut Chars<'_>, current: &str) -> Option<String> {
    const NAME: &str = "LD_LIBRARY_PATH";
    chars.next(); // '$'
    if chars.peek() == Some(&'{') {
        chars.next();
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_'))
                .collect();
        if name != NAME {
            return None;
        }
        match chars.next()? {
            '}' => Some(current.to_owned()),
            ':' if chars.next()? == '-' => {
                let default = eval_word(chars, current, true)?;
                Some(if current.is_empty() {
                    default
                } else {
                    current.to_owned()
                })
            }
            _ => None,
        }
    } else {
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_'))
                .collect();
        (name == NAME).then(|| current.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(scripts: &[(&str, &str)]) -> Result<Option<Declared>, String> {
        let owned: Vec<(String, String)> = scripts
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        evaluate(&owned)
    }

    fn value(scripts: &[(&str, &str)]) -> Option<String> {
        eval(scripts).unwrap().map(|d| d.value)
    }

    #[test]
    fn oci_env_in_both_spellings() {
        // Singularity 3.x before the default form, then Apptainer / SingularityCE.
        let plain = "#!/bin/sh\nexport PATH=\"/usr/bin:/bin\"\nexport LD_LIBRARY_PATH=\"/usr/local/cuda/compat/lib:/usr/local/nvidia/lib64\"\n";
        assert_eq!(
            value(&[("10-docker2singularity.sh", plain)]).as_deref(),
            Some("/usr/local/cuda/compat/lib:/usr/local/nvidia/lib64")
        );
        let default = "#!/bin/sh\nexport LD_LIBRARY_PATH=\"${LD_LIBRARY_PATH:-\"/usr/local/nvidia/lib:/usr/local/nvidia/lib64\"}\"\n";
        let got = eval(&[("10-docker2singularity.sh", default)])
            .unwrap()
            .unwrap();
        assert_eq!(got.value, "/usr/local/nvidia/lib:/usr/local/nvidia/lib64");
        assert_eq!(got.from, ["10-docker2singularity.sh:2"]);
    }

    #[test]
    fn environment_section_builds_on_the_value_so_far() {
        let docker = "export LD_LIBRARY_PATH=\"/opt/a\"\n";
        let env = "# Custom environment shell code should follow\n\
                   export LD_LIBRARY_PATH=/opt/b/lib:$LD_LIBRARY_PATH\n\
                   LD_LIBRARY_PATH=\"${LD_LIBRARY_PATH}\":'/opt/c d'\n\
                   export LD_LIBRARY_PATH\n";
        let got = eval(&[("10", docker), ("90", env)]).unwrap().unwrap();
        assert_eq!(got.value, "/opt/b/lib:/opt/a:/opt/c d");
        assert_eq!(got.from, ["10:1", "90:2", "90:3"]);
        // The default form keeps a value already set.
        assert_eq!(
            value(&[
                ("10", docker),
                ("90", "export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-/other}\n")
            ])
            .as_deref(),
            Some("/opt/a")
        );
    }

    #[test]
    fn no_assignment_or_an_empty_one_is_none() {
        assert_eq!(value(&[("90", "#!/bin/sh\nexport PATH=/bin\n")]), None);
        assert_eq!(value(&[("90", "export LD_LIBRARY_PATH=\"\"\n")]), None);
        assert_eq!(value(&[]), None);
    }

    #[test]
    fn what_only_a_shell_knows_is_an_error_naming_the_line() {
        for text in [
            "if [ -z \"$LD_LIBRARY_PATH\" ]; then\n",
            "export LD_LIBRARY_PATH=$CUDA_HOME/lib64\n",
            "export LD_LIBRARY_PATH=`cat /etc/libs`\n",
            "export LD_LIBRARY_PATH=$(cat /etc/libs)\n",
            "export LD_LIBRARY_PATH=\"/a\" && echo\n",
            "export LD_LIBRARY_PATH=\"/a\n",
            "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+x}\n",
            "export OTHER=x LD_LIBRARY_PATH=/a\n",
        ] {
            let e = eval(&[("90-environment.sh", text)]).unwrap_err();
            assert!(
                e.starts_with("90-environment.sh:1 sets LD_LIBRARY_PATH"),
                "{text}: {e}"
            );
        }
    }
}
