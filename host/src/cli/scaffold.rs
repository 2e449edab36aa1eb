//! `switchboard plugin new NAME`: a new plugin crate that builds as it is for
//! `wasm32-wasip2`, with a working `message-pre-send` hook, a unit test, a manifest and a
//! README. The file templates live in `scaffold/` next to this module, so they read (and
//! diff) as the files they become.

use std::path::{Path, PathBuf};

/// The templates, with `{{placeholders}}` filled in by [`render`].
const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("scaffold/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("scaffold/lib.rs.tmpl")),
    ("plugin.toml", include_str!("scaffold/plugin.toml.tmpl")),
    ("README.md", include_str!("scaffold/README.md.tmpl")),
    (".gitignore", include_str!("scaffold/gitignore.tmpl")),
];

/// Names the generated code imports from the SDK; a plugin type must not shadow them.
const SDK_NAMES: &[&str] = &["Plugin", "Message", "PreSendOutcome", "HookSet"];

/// Words Rust (or Cargo, for library names) reserves; a crate cannot be named after them.
const RESERVED: &[&str] = &[
    "as", "async", "await", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "self",
    "static", "struct", "super", "test", "trait", "true", "try", "type", "typeof", "unsafe",
    "unsized", "use", "virtual", "where", "while", "yield", "core", "std", "alloc",
];

/// The guest SDK of the checkout this binary was built from, if it is still there.
pub fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().unwrap_or(sdk))
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("invalid plugin name {0:?}: {1}")]
    InvalidName(String, &'static str),
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    #[error(
        "no plugin SDK: pass --sdk PATH (the `plugin-api` directory of a Switchboard checkout)"
    )]
    NoSdk,
    #[error("{}: not the plugin SDK (no Cargo.toml for switchboard-plugin-api there)", .0.display())]
    NotAnSdk(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was created.
#[derive(Debug)]
pub struct Scaffolded {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// The `.wasm` a release build produces, relative to the crate's target directory.
    pub component: String,
}

/// Create the crate `NAME` as `parent/NAME`, depending on the SDK at `sdk` (by default the
/// checkout's own `plugin-api`). Refuses an invalid name and an existing directory.
pub fn scaffold(
    name: &str,
    parent: &Path,
    sdk: Option<&Path>,
) -> Result<Scaffolded, ScaffoldError> {
    validate_name(name)?;
    let sdk = match sdk {
        Some(path) => path.to_path_buf(),
        None => default_sdk().ok_or(ScaffoldError::NoSdk)?,
    };
    let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"switchboard-plugin-api\"") {
        return Err(ScaffoldError::NotAnSdk(sdk));
    }
    // An absolute path keeps the crate building wherever it is moved on this machine.
    let sdk = std::path::absolute(&sdk).map_err(|source| ScaffoldError::Io {
        path: sdk.clone(),
        source,
    })?;
    let dir = parent.join(name);
    if dir.symlink_metadata().is_ok() {
        return Err(ScaffoldError::Exists(dir));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    // `create_dir` (not `_all`) fails if the directory appeared meanwhile: never write into
    // something that is not ours.
    std::fs::create_dir(&dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ScaffoldError::Exists(dir.clone())
        } else {
            ScaffoldError::Io {
                path: dir.clone(),
                source: e,
            }
        }
    })?;
    let vars = Vars::new(name, &sdk);
    let mut files = Vec::new();
    for (relative, template) in TEMPLATES {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, render(template, &vars)).map_err(io(&path))?;
        files.push(path);
    }
    Ok(Scaffolded {
        dir,
        files,
        component: format!("wasm32-wasip2/release/{}.wasm", vars.crate_name),
    })
}

/// The manifest's rule for plugin names (1-64 of `[a-z0-9_-]`), plus what a Rust crate
/// needs: a leading letter and not a reserved word.
pub fn validate_name(name: &str) -> Result<(), ScaffoldError> {
    let invalid = |why| Err(ScaffoldError::InvalidName(name.to_string(), why));
    if !switchboard::names::is_identifier(name, switchboard::names::MAX_PLUGIN_NAME) {
        return invalid("use 1-64 characters: lowercase letters, digits, '-' and '_'");
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return invalid("start with a letter (it also names a Rust crate)");
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        return invalid("that is a reserved word in Rust");
    }
    Ok(())
}

struct Vars {
    name: String,
    crate_name: String,
    type_name: String,
    code_prefix: String,
    sdk_path: String,
}

impl Vars {
    fn new(name: &str, sdk: &Path) -> Self {
        let mut type_name: String = name
            .split(['-', '_'])
            .filter(|part| !part.is_empty())
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        if SDK_NAMES.contains(&type_name.as_str()) {
            type_name.push_str("Plugin");
        }
        // Reject codes are at most 64 bytes and `.blocked` is appended.
        let code_prefix: String = name.chars().take(56).collect();
        Self {
            name: name.to_string(),
            crate_name: name.replace('-', "_"),
            type_name,
            code_prefix,
            // A TOML basic string, escaped (backslashes in Windows paths, quotes).
            sdk_path: toml::Value::String(sdk.display().to_string()).to_string(),
        }
    }
}

fn render(template: &str, vars: &Vars) -> String {
    template
        .replace("{{name}}", &vars.name)
        .replace("{{crate_name}}", &vars.crate_name)
        .replace("{{type_name}}", &vars.type_name)
        .replace("{{code_prefix}}", &vars.code_prefix)
        .replace("{{sdk_path}}", &vars.sdk_path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use switchboard::config::LimitsConfig;
    use switchboard::plugins::Manifest;

    #[test]
    fn names_follow_the_manifest_rule_and_rust_crate_rules() {
        for good in ["shout", "dlp-2", "my_filter", "a"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Shout",
            "has space",
            "../x",
            "1st",
            "-x",
            "self",
            "test",
            &"a".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scaffolds_a_crate_with_a_valid_manifest_and_refuses_to_overwrite() {
        let sdk = default_sdk().expect("the checkout's SDK");
        let parent = tempfile::tempdir().unwrap();
        let made = scaffold("word-filter", parent.path(), Some(&sdk)).unwrap();
        assert_eq!(made.dir, parent.path().join("word-filter"));
        assert_eq!(made.component, "wasm32-wasip2/release/word_filter.wasm");
        let lib = std::fs::read_to_string(made.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct WordFilter"), "{lib}");
        assert!(!lib.contains("{{"), "every placeholder is filled");
        let cargo: toml::Table =
            toml::from_str(&std::fs::read_to_string(made.dir.join("Cargo.toml")).unwrap()).unwrap();
        assert!(cargo.contains_key("workspace"), "a standalone crate");
        let dep = &cargo["dependencies"]["switchboard-plugin-api"]["path"];
        assert!(
            Path::new(dep.as_str().unwrap())
                .join("Cargo.toml")
                .is_file(),
            "{dep}"
        );
        // The generated manifest is one the server accepts, naming the built component.
        let manifest =
            Manifest::load(&made.dir.join("plugin.toml"), &LimitsConfig::default()).unwrap();
        assert_eq!(manifest.name, "word-filter");
        assert_eq!(manifest.component, made.dir.join("word_filter.wasm"));

        let before = std::fs::read(made.dir.join("src/lib.rs")).unwrap();
        assert!(matches!(
            scaffold("word-filter", parent.path(), Some(&sdk)),
            Err(ScaffoldError::Exists(_))
        ));
        assert_eq!(std::fs::read(made.dir.join("src/lib.rs")).unwrap(), before);
        assert!(matches!(
            scaffold("other", parent.path(), Some(parent.path())),
            Err(ScaffoldError::NotAnSdk(_))
        ));
    }

    #[test]
    fn type_names_never_shadow_the_sdk() {
        let sdk = Path::new("/sdk");
        assert_eq!(Vars::new("plugin", sdk).type_name, "PluginPlugin");
        assert_eq!(Vars::new("my_dlp-2", sdk).type_name, "MyDlp2");
        assert_eq!(Vars::new(&"a".repeat(64), sdk).code_prefix.len(), 56);
    }
}
